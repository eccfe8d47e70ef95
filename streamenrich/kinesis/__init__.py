"""Amazon Kinesis for Spark Structured Streaming, in Python on boto3.

>>> from streamenrich.kinesis import register
>>> register(spark)                                   # doctest: +SKIP
>>> events = spark.readStream.format("kinesis").option("streamName", "events").load()
... # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from streamenrich.kinesis.client import Shard, kinesis_client, list_shards
from streamenrich.kinesis.errors import (
    KinesisError,
    MetadataError,
    OptionError,
    PutRecordsError,
    RecordTooLargeError,
    SchemaError,
    ShardReadError,
)
from streamenrich.kinesis.positions import ShardPosition

__all__ = [
    "KinesisError",
    "MetadataError",
    "OptionError",
    "PutRecordsError",
    "RecordTooLargeError",
    "SchemaError",
    "Shard",
    "ShardPosition",
    "ShardReadError",
    "kinesis_client",
    "list_shards",
    "register",
]


def register(spark: Any) -> None:
    """Register the ``kinesis`` source and sink with a SparkSession."""
    from streamenrich.kinesis.datasource import KinesisDataSource

    spark.dataSource.register(KinesisDataSource)
