"""Driver program for ``test_cluster.py``: copy one Kinesis stream to another on a cluster.

Run in its own Python process (the test session already holds a local SparkContext, and a
process can have only one). Writes a JSON report to ``--report``:

- ``app_id``, ``rows``: the application and the rows the query read (its progress);
- ``query_s``: wall time of the streaming query, start to termination;
- ``executors``: for each task of a probe job run on the same executors, the Python that ran
  it, where it imported ``streamenrich`` from, and the command line of the JVM it descends
  from (an executor's, never the driver's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from streamenrich.kinesis import register

# Passed to the executors explicitly: a worker started elsewhere would not inherit them.
FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION")


def where_am_i(_: Any) -> list[dict[str, Any]]:
    """Runs in a task: the Python worker's view of its process and its JVM ancestor."""
    import importlib.util
    import os
    import sys

    spec = importlib.util.find_spec("streamenrich")
    pid, jvm = os.getpid(), ""
    while pid > 1:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode()
        if "java" in cmdline.split(" ", 1)[0]:
            jvm = cmdline
            break
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    return [
        {
            "python": sys.executable,
            "streamenrich": spec.origin if spec else None,
            "jvm_pid": pid,
            "jvm": jvm,
        }
    ]


def registry_lookup(spark: SparkSession) -> list[list[str | None]]:
    """The registry index on the cluster: built on the driver, shipped with ``addFile``,
    memory-mapped by the executors' Python workers; ``[rut, full_name]`` per probe."""
    from pyspark.sql import functions as F

    from streamenrich.enrich.lookup import RegistryIndex, rut_key
    from streamenrich.reference.contract import REGISTRY_SCHEMA
    from streamenrich.reference.rut import format_rut

    bodies = (1_000_005, 2_000_000, 12_345_678, 20_000_000)
    people = spark.createDataFrame(
        [(format_rut(b), f"P{b}", "retail", "CL-RM", "low", False, 100) for b in bodies],
        REGISTRY_SCHEMA,
    )
    index = RegistryIndex.build(spark, people)
    probes = ["12345678-5", "1-9", None, format_rut(20_000_000), format_rut(3_000_000)]
    frame = spark.createDataFrame([(r,) for r in probes], "rut STRING").repartition(2)
    rows = index.join(frame, rut_key(F.col("rut"))).select("rut", "full_name").collect()
    return sorted(([r.rut, r.full_name] for r in rows), key=lambda pair: str(pair[0]))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("master", "endpoint", "source", "target", "checkpoint", "metadata", "report"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--driver-port", type=int, required=True)
    parser.add_argument("--block-manager-port", type=int, required=True)
    args = parser.parse_args()

    builder = (
        SparkSession.builder.master(args.master)
        .appName("streamenrich-cluster-copy")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.port", str(args.driver_port))
        .config("spark.blockManager.port", str(args.block_manager_port))
        .config("spark.executor.memory", "1g")
        .config("spark.executor.cores", "2")
        .config("spark.cores.max", "2")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
    )
    for name in FORWARDED_ENV:
        if name in os.environ:
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    spark = builder.getOrCreate()
    try:
        register(spark)
        started = time.monotonic()
        query = (
            spark.readStream.format("kinesis")
            .option("streamName", args.source)
            .option("endpointUrl", args.endpoint)
            .option("metadataPath", args.metadata)
            .load()
            .select("partitionKey", "data")
            .writeStream.format("kinesis")
            .option("streamName", args.target)
            .option("endpointUrl", args.endpoint)
            .option("checkpointLocation", args.checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        if not query.awaitTermination(600):
            query.stop()
            raise TimeoutError("the copy did not finish in 600 s")
        query_s = time.monotonic() - started
        if query.exception() is not None:
            raise RuntimeError(f"the copy failed: {query.exception()}")
        rows = sum(p["numInputRows"] for p in query.recentProgress)
        executors = spark.sparkContext.parallelize(range(4), 4).mapPartitions(where_am_i).collect()
        lookup = registry_lookup(spark)
        report = {
            "app_id": spark.sparkContext.applicationId,
            "rows": rows,
            "batches": len(query.recentProgress),
            "query_s": query_s,
            "driver_pid": os.getpid(),
            "executors": executors,
            "lookup": lookup,
        }
        Path(args.report).write_text(json.dumps(report, indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
