"""The ``kinesis`` data source: Spark's entry point to the reader and the writers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceStreamArrowWriter,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from streamenrich.kinesis.client import shared_client
from streamenrich.kinesis.options import SinkOptions
from streamenrich.kinesis.sink import RecordPublisher, check_sink_schema
from streamenrich.kinesis.source import SOURCE_SCHEMA, KinesisStreamReader


@dataclass
class PutCommitMessage(WriterCommitMessage):
    records: int
    calls: int
    retried: int


class KinesisDataSource(DataSource):
    """``spark.readStream.format("kinesis")`` and ``df.writeStream.format("kinesis")``."""

    @classmethod
    def name(cls) -> str:
        return "kinesis"

    def schema(self) -> str:
        return SOURCE_SCHEMA

    def streamReader(self, schema: StructType) -> KinesisStreamReader:
        return KinesisStreamReader(dict(self.options))

    def streamWriter(self, schema: StructType, overwrite: bool) -> KinesisStreamWriter:
        return KinesisStreamWriter(dict(self.options), schema)

    def writer(self, schema: StructType, overwrite: bool) -> KinesisBatchWriter:
        return KinesisBatchWriter(dict(self.options), schema)


def _write_partition(options: SinkOptions, batches: Iterator[pa.RecordBatch]) -> PutCommitMessage:
    """Write one task's rows: all of them are checked before the first ``PutRecords`` call.

    A row Kinesis would refuse (say one over 1 MiB in the task's last Arrow batch) then fails
    the task with nothing written, instead of after the chunks before it were stored, which
    every retry of the task would store again. The price is memory: the task's rows are held,
    as the Arrow batches Spark hands over, until they are written.
    """
    held = list(batches)
    # The client is made here, on the executor: boto3 clients do not pickle.
    publisher = RecordPublisher(
        shared_client(options.region, options.endpoint_url), options.stream_name
    )
    publisher.put_arrow(held)
    return PutCommitMessage(publisher.records_written, publisher.calls, publisher.retried_entries)


class _PutRecordsWriter:
    """What both writers share: options and schema checked on the driver, rows put per task."""

    def __init__(self, options: dict[str, str], schema: StructType) -> None:
        self.options = SinkOptions.parse(options)
        check_sink_schema((f.name, f.dataType.typeName()) for f in schema.fields)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> PutCommitMessage:
        return _write_partition(self.options, iterator)


class KinesisStreamWriter(_PutRecordsWriter, DataSourceStreamArrowWriter):
    """Each task writes its rows and returns only when all are stored; else the batch fails."""

    def commit(self, messages: list[Any], batchId: int) -> None:
        """Nothing to finish: every record was stored before its task succeeded."""

    def abort(self, messages: list[Any], batchId: int) -> None:
        """Records already stored stay (at-least-once); the replayed batch writes them again."""


class KinesisBatchWriter(_PutRecordsWriter, DataSourceArrowWriter):
    """``df.write.format("kinesis")``: the same writer for static DataFrames."""
