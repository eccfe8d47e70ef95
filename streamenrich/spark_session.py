"""A SparkSession for streamenrich: local by default, any cluster by master URL."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any


def build_spark(
    master: str = "local[*]",
    app_name: str = "streamenrich",
    conf: Mapping[str, str] | None = None,
) -> Any:
    """Build (or reuse) a session with the ``kinesis`` source and sink registered.

    On ``local[...]`` the driver binds to loopback and shuffles use few partitions; on a
    cluster (``spark://``, ``yarn``, ``k8s://``) only what ``conf`` says is added, so
    ``spark-defaults.conf`` and ``spark-submit`` settings win.
    """
    from pyspark.sql import SparkSession

    from streamenrich.kinesis import register

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Rules that read the hour of an event (atm_small_hours) mean UTC unless told otherwise.
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.showConsoleProgress", "false")
        )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    register(spark)
    return spark
