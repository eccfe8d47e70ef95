"""Helpers shared by the tests: putting and draining records with plain boto3."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streamenrich.kinesis.client import list_shards


def put_all(client: Any, stream: str, records: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Put (partitionKey, data) records, 500 a call, retrying failed entries; returns results."""
    results: list[dict[str, Any]] = []
    for i in range(0, len(records), 500):
        pending = list(records[i : i + 500])
        while pending:
            response = client.put_records(
                StreamName=stream, Records=[{"PartitionKey": k, "Data": d} for k, d in pending]
            )
            retry = []
            for (key, data), result in zip(pending, response["Records"], strict=True):
                if result.get("ErrorCode"):
                    retry.append((key, data))
                else:
                    results.append(result)
            pending = retry
    return results


def wait_active(client: Any, stream: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise TimeoutError(f"stream {stream} not ACTIVE after {timeout_s}s")


def drain(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every record in every shard, read with plain boto3 (the oracle for sink tests)."""
    out: list[dict[str, Any]] = []
    for shard in list_shards(client, stream):
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            out.extend(response["Records"])
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return out


def multiset(pairs: Iterable[tuple[str, bytes]]) -> dict[tuple[str, bytes], int]:
    counts: dict[tuple[str, bytes], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return counts


class BatchCollector:
    """A ``foreachBatch`` target that keeps every micro-batch's rows, by batch id.

    ``fail_on_batch`` makes the given batch raise after its rows were read (and recorded in
    ``failed``): a crash between the source's read and Spark's commit.
    """

    def __init__(self, fail_on_batch: int | None = None, track_partitions: bool = False) -> None:
        self.batches: dict[int, list[Any]] = {}
        self.failed: dict[int, list[Any]] = {}
        self.fail_on_batch = fail_on_batch
        # batch id -> the set of shards each Spark partition (read task) held, when tracked.
        self.partitions: dict[int, set[frozenset[str]]] = {}
        self.track_partitions = track_partitions

    def __call__(self, frame: Any, batch_id: int) -> None:
        if self.track_partitions:
            from pyspark.sql import functions as F

            tagged = frame.select(F.spark_partition_id().alias("p"), "shardId").collect()
            held: dict[int, set[str]] = {}
            for row in tagged:
                held.setdefault(row.p, set()).add(row.shardId)
            self.partitions[batch_id] = {frozenset(shards) for shards in held.values()}
        rows = frame.collect()
        if batch_id == self.fail_on_batch:
            self.failed[batch_id] = rows
            self.fail_on_batch = None
            raise RuntimeError(f"injected crash in batch {batch_id} before commit")
        self.batches[batch_id] = rows

    @property
    def rows(self) -> list[Any]:
        return [row for batch_id in sorted(self.batches) for row in self.batches[batch_id]]


def read_stream(spark: Any, options: dict[str, str]) -> Any:
    reader = spark.readStream.format("kinesis")
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader.load()


def run_available_now(
    spark: Any,
    options: dict[str, str],
    checkpoint: str,
    collector: BatchCollector,
    timeout_s: float = 300.0,
) -> Any:
    """Run an availableNow query into ``collector``; returns the finished query."""
    query = (
        read_stream(spark, options)
        .writeStream.foreachBatch(collector)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    finished = query.awaitTermination(timeout_s)
    if not finished:
        query.stop()
        raise TimeoutError(f"availableNow query did not stop within {timeout_s}s")
    return query


def server_clock_lag_s(client: Any, stream: str) -> float:
    """How far the server's arrival clock runs behind ours, in seconds (negative: ahead).

    kinesis-mock (Scala.js on Node) stamps arrivals with ``performance.timeOrigin +
    performance.now()``: a monotonic clock fixed at process start, which drifts from the
    wall clock while NTP slews it (up to 0.5 ms a second). A test that places records on
    either side of a client-side time waits this lag out. Puts one record into ``stream``.
    """
    before = time.time()
    result = client.put_record(StreamName=stream, PartitionKey="clock", Data=b"clock")
    after = time.time()
    iterator = client.get_shard_iterator(
        StreamName=stream,
        ShardId=result["ShardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=result["SequenceNumber"],
    )["ShardIterator"]
    record = client.get_records(ShardIterator=iterator, Limit=1)["Records"][0]
    arrival = record["ApproximateArrivalTimestamp"].timestamp()
    return float((before + after) / 2 - arrival)


def iso_millis(epoch_s: float) -> str:
    """``epoch_s`` as an ISO-8601 UTC time with milliseconds (an ``AT_TIMESTAMP`` start)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))
    return f"{stamp}.{int(epoch_s * 1000) % 1000:03d}Z"


def wait_for(condition: Callable[[], object], timeout_s: float) -> None:
    """Poll ``condition`` every 0.1 s until it is true; ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")
