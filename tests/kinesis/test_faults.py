"""Transient and fatal Kinesis errors, injected by :class:`tests.kinesis.proxy.KinesisProxy`.

The Spark tests point the source at the proxy, so the faults reach the executors (separate
Python processes); the unit tests drive ``backoff_delay``, ``call_with_backoff`` and the
``ShardReader`` directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pyspark.errors import StreamingQueryException

from streamenrich.kinesis.client import (
    THROTTLING_CODES,
    backoff_delay,
    call_with_backoff,
    kinesis_client,
)
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.shard_reader import ResumeIterator, ShardReader, ShardReadPlan
from streamenrich.testing.proxy import Exchange, KinesisProxy, single_attempt_client
from tests.support import multiset, put_all

THROTTLED = "ProvisionedThroughputExceededException"
PER_SHARD = 1_500
BATCH_LIMIT = 100  # maxRecordsPerShard: 15 micro-batches of one GetRecords per shard
FULL_READS = 2 * PER_SHARD // BATCH_LIMIT
# A full page is never taken for the tip of a shard, so each shard's backlog (an exact
# multiple of the limit) ends with one read that returns nothing.
READS = FULL_READS + 2
READ_SIZES = [0, 0] + [BATCH_LIMIT] * FULL_READS


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[KinesisProxy]:
    with KinesisProxy(moto_endpoint) as running:
        yield running
    assert running.failures == []


def keys_per_shard(client: Any, stream: str, per_shard: int) -> list[str]:
    """Partition keys that hash to each shard exactly ``per_shard`` times, interleaved.

    Exact counts make every batch read exactly ``BATCH_LIMIT`` records per shard, so the
    call counts below are exact too.
    """
    shards = client.list_shards(StreamName=stream)["Shards"]
    ranges = [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in sorted(shards, key=lambda s: s["ShardId"])
    ]
    buckets: list[list[str]] = [[] for _ in ranges]
    n = 0
    while any(len(b) < per_shard for b in buckets):
        key = f"pk-{n:06d}"
        n += 1
        hashed = int(hashlib.md5(key.encode()).hexdigest(), 16)
        for bucket, (low, high) in zip(buckets, ranges, strict=True):
            if low <= hashed <= high and len(bucket) < per_shard:
                bucket.append(key)
    return [key for group in zip(*buckets, strict=True) for key in group]


def fill_stream(endpoint: str, stream: str, per_shard: int = PER_SHARD) -> list[tuple[str, bytes]]:
    """Put ``per_shard`` records in each shard of the stream, straight to the upstream."""
    client = kinesis_client(endpoint_url=endpoint)
    keys = keys_per_shard(client, stream, per_shard)
    records = [(key, f"record-{i:05d}".encode()) for i, key in enumerate(keys)]
    results = put_all(client, stream, records)
    assert set(Counter(r["ShardId"] for r in results).values()) == {per_shard}
    return records


def read_available_now(
    spark: Any, tmp_path: Path, stream: str, endpoint_url: str, timeout_s: float = 150
) -> list[Any]:
    """Run the source once with ``trigger(availableNow=True)`` into a memory table."""
    table = f"kinesis_{uuid.uuid4().hex[:12]}"
    query = (
        spark.readStream.format("kinesis")
        .option("streamName", stream)
        .option("endpointUrl", endpoint_url)
        .option("maxRecordsPerShard", str(BATCH_LIMIT))
        .option("metadataPath", str(tmp_path / "metadata"))
        .load()
        .writeStream.format("memory")
        .queryName(table)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        finished = query.awaitTermination(timeout_s)
    finally:
        if query.isActive:
            query.stop()
    assert finished, f"the availableNow query did not finish within {timeout_s}s"
    rows = spark.table(table).collect()
    spark.sql(f"DROP VIEW IF EXISTS {table}")
    return rows


def assert_exactly_once(rows: list[Any], records: list[tuple[str, bytes]]) -> None:
    assert multiset((r.partitionKey, bytes(r.data)) for r in rows) == multiset(records)
    positions = [(r.shardId, r.sequenceNumber) for r in rows]
    assert len(set(positions)) == len(positions) == len(records)


# -- the Spark source under injected faults ------------------------------------------------


def is_probe(request: dict[str, Any]) -> bool:
    """The driver's one-record probe (``GetRecords`` with ``Limit=1``), not a batch's read."""
    return request.get("Limit") == 1


def split_reads(proxy: KinesisProxy) -> tuple[list[Exchange], list[Exchange]]:
    """The forwarded GetRecords calls: the executors' batch reads and the driver's probes."""
    forwarded = [e for e in proxy.exchanges if e.operation == "GetRecords" and not e.injected]
    return [e for e in forwarded if e.limit != 1], [e for e in forwarded if e.limit == 1]


def test_source_reads_exactly_once_under_throttling(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    records = fill_stream(moto_endpoint, stream)
    proxy.fail("GetRecords", THROTTLED, share=0.3)
    proxy.fail("GetShardIterator", THROTTLED, share=0.2)
    proxy.fail("ListShards", "LimitExceededException", share=0.2)

    rows = read_available_now(spark, tmp_path, stream, proxy.endpoint_url)

    assert_exactly_once(rows, records)
    reads, probes = split_reads(proxy)
    # One GetRecords per shard per batch, each returning a full batch: nothing read twice.
    assert len(reads) == READS
    assert sorted(e.records for e in reads) == READ_SIZES
    assert all(e.records <= 1 for e in probes)
    assert proxy.records_fetched == 2 * PER_SHARD + sum(e.records for e in probes)
    injected_reads = proxy.injected("GetRecords")
    assert len(injected_reads) >= 3
    assert proxy.injected("GetShardIterator")
    assert proxy.calls["GetRecords"] == READS + len(probes) + len(injected_reads)

    # Every injected error was retried by the same logical call (same botocore invocation
    # id, next attempt, same shard) after a jittered wait within botocore's throttling
    # bound: rand * 2**(attempt - 1) seconds.
    exchanges = proxy.exchanges
    delays = []
    for index, failed in enumerate(exchanges):
        if failed.injected is None:
            continue
        later = [e for e in exchanges[index + 1 :] if e.operation == failed.operation]
        retry = next((e for e in later if e.invocation_id == failed.invocation_id), None)
        if retry is None:
            # botocore gave up (5 attempts): the library's own backoff made a new call.
            assert any(e.shard == failed.shard and e.attempt == 1 for e in later)
            continue
        assert failed.attempt is not None and retry.attempt == failed.attempt + 1
        assert retry.shard == failed.shard
        delay = retry.at - failed.at
        assert 0 <= delay <= 2 ** (failed.attempt - 1) + 0.5
        delays.append(delay)
    assert len(delays) >= 4
    assert max(delays) - min(delays) > 0.05, f"no jitter in {delays}"
    assert statistics.pstdev(delays) > 0.02


def test_source_renews_expired_iterators_without_loss_or_duplicates(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    records = fill_stream(moto_endpoint, stream)
    # Only the batch reads: a probe uses its iterator at once, it cannot expire.
    proxy.fail("GetRecords", "ExpiredIteratorException", share=0.25, when=lambda r: not is_probe(r))

    rows = read_available_now(spark, tmp_path, stream, proxy.endpoint_url)

    assert_exactly_once(rows, records)
    expired = proxy.injected("GetRecords")
    assert len(expired) >= 2
    assert all(e.attempt == 1 for e in expired)  # botocore does not retry it: the reader does
    reads, probes = split_reads(proxy)
    assert len(reads) == READS
    assert sorted(e.records for e in reads) == READ_SIZES
    # Iterators are handed from each read and probe to the next: one GetShardIterator for
    # the first probe (it stops at the first shard with data), one per shard for the first
    # batch, then only a renewal per expired iterator.
    assert proxy.calls["GetShardIterator"] == 1 + 2 + len(expired)
    assert proxy.calls["GetRecords"] == READS + len(probes) + len(expired)


@pytest.mark.parametrize("where", ["every call", "executor reads"])
def test_source_fails_on_access_denied(
    spark: Any,
    moto_stream: Any,
    moto_endpoint: str,
    proxy: KinesisProxy,
    tmp_path: Path,
    where: str,
) -> None:
    stream = moto_stream(shards=2)
    fill_stream(moto_endpoint, stream, per_shard=10)
    proxy.fail(
        "GetRecords",
        "AccessDeniedException",
        message="User: arn:aws:iam::123456789012:user/reader is not authorized to perform: "
        "kinesis:GetRecords",
        when=None if where == "every call" else (lambda r: not is_probe(r)),
    )

    with pytest.raises(StreamingQueryException) as failure:
        read_available_now(spark, tmp_path, stream, proxy.endpoint_url)

    message = str(failure.value)
    assert "AccessDeniedException" in message
    assert "GetRecords" in message
    assert "kinesis:GetRecords" in message
    if where == "executor reads":
        assert f"GetRecords on stream {stream!r} shard shardId-" in message
    # Not transient: neither botocore nor the library retried it.
    denied = proxy.injected("GetRecords")
    assert all(e.attempt == 1 for e in denied)
    assert 1 <= len(denied) <= 2  # one per shard at most
    _, probes = split_reads(proxy)
    assert proxy.calls["GetRecords"] == len(denied) + len(probes)
    assert proxy.records_fetched == sum(e.records for e in probes)


def test_driver_probe_failure_names_the_stream_and_shard(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=1)
    fill_stream(moto_endpoint, stream, per_shard=3)
    proxy.fail("GetRecords", "AccessDeniedException", when=is_probe)

    with pytest.raises(StreamingQueryException) as failure:
        read_available_now(spark, tmp_path, stream, proxy.endpoint_url)

    assert "AccessDeniedException" in str(failure.value)
    assert stream in str(failure.value)
    assert "shardId-000000000000" in str(failure.value)


# -- ShardReader: its own backoff, when botocore does not retry -----------------------------


def test_shard_reader_retries_throttling_itself_with_growing_jittered_waits(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    records = fill_stream(moto_endpoint, stream, per_shard=300)
    proxy.fail("GetRecords", THROTTLED, times=4)
    proxy.fail("GetShardIterator", THROTTLED, times=2)
    # botocore tries once, so each injected error reaches the reader.
    client = single_attempt_client(proxy.endpoint_url)
    waits: list[float] = []
    plan = ShardReadPlan(
        stream_name=stream,
        shard_id="shardId-000000000000",
        start=ShardPosition.trim_horizon(),
        max_records=None,
        max_fetch_time_ms=10_000,
        cutoff_ms=None,
        replay=None,
    )
    reader = ShardReader(client, plan, sleep=waits.append)

    read = [
        (key, data)
        for batch in reader.batches()
        for key, data in zip(
            batch.column("partitionKey").to_pylist(), batch.column("data").to_pylist(), strict=True
        )
    ]

    assert read == records
    assert reader.result is not None and reader.result.count == 300
    assert len(waits) == 6
    # Attempt k waits uniform in [0, 0.1 * 2**k]: 2 waits for the iterator, 4 for the read.
    bounds = [0.1, 0.2, 0.1, 0.2, 0.4, 0.8]
    assert all(0 <= wait <= bound for wait, bound in zip(waits, bounds, strict=True))
    assert proxy.calls["GetRecords"] == 5


def test_sustained_throttling_ends_an_explore_at_its_time_limit_and_the_next_read_goes_on(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    """Throttling is never fatal (the KCL slows down too): a first read stops at its time
    limit with what it has, and hands on the iterator it was throttled at."""
    stream = moto_stream(shards=1)
    records = fill_stream(moto_endpoint, stream, per_shard=5)
    proxy.fail("GetRecords", THROTTLED)
    client = single_attempt_client(proxy.endpoint_url)
    plan = ShardReadPlan(
        stream_name=stream,
        shard_id="shardId-000000000000",
        start=ShardPosition.trim_horizon(),
        max_records=None,
        max_fetch_time_ms=1_000,
        cutoff_ms=None,
        replay=None,
    )
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += 0.25  # each backoff moves the read's clock on

    reader = ShardReader(client, plan, sleep=wait, clock=lambda: now[0])
    assert list(reader.batches()) == []
    first = reader.result
    assert first is not None
    assert (first.count, first.caught_up, first.closed, first.last) == (0, False, False, None)
    assert first.iterator is not None
    # Throttled calls until the 1 s limit: at 0, 0.25, 0.5, 0.75 and 1.0 s.
    assert len(waits) == 4
    assert proxy.calls["GetRecords"] == 5

    proxy.clear_faults()
    resumed = ShardReader(
        client,
        dataclasses.replace(
            plan, resume=ResumeIterator(first.iterator, first.iterator_ms or 0, None)
        ),
        wall_ms=lambda: first.iterator_ms or 0,
    )
    read = [
        (key, data)
        for batch in resumed.batches()
        for key, data in zip(
            batch.column("partitionKey").to_pylist(), batch.column("data").to_pylist(), strict=True
        )
    ]
    assert read == records
    # No new GetShardIterator: the throttled read's iterator carried on.
    assert proxy.calls["GetShardIterator"] == 1


# -- client.backoff_delay and client.call_with_backoff -------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 10, 30])
def test_backoff_delay_is_full_jitter_below_the_capped_exponential(attempt: int) -> None:
    ceiling = min(5.0, 0.1 * 2**attempt)
    samples = [backoff_delay(attempt) for _ in range(2_000)]
    assert all(0.0 <= s <= ceiling for s in samples)
    # Full jitter: spread over the whole range, not clustered at the ceiling.
    assert max(samples) > 0.9 * ceiling
    assert min(samples) < 0.1 * ceiling
    assert 0.4 * ceiling < statistics.mean(samples) < 0.6 * ceiling


def test_backoff_delay_honours_base_and_cap() -> None:
    assert all(0.0 <= backoff_delay(a, base_s=1.0, cap_s=2.0) <= 2.0 for a in range(20))
    assert all(backoff_delay(a, base_s=0.0) == 0.0 for a in range(5))


def client_error(code: str, operation: str = "GetRecords") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from a stub"}}, operation)


class FlakyCall:
    """A stand-in for one boto3 call: raises the given errors in turn, then returns."""

    def __init__(self, *errors: ClientError, result: object = "ok") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.result = result

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_call_with_backoff_retries_throttling_then_returns(code: str) -> None:
    call = FlakyCall(client_error(code), client_error(code), client_error(code))
    waits: list[float] = []

    assert call_with_backoff(call, sleep=waits.append) == "ok"

    assert call.calls == 4
    assert len(waits) == 3
    assert all(0 <= w <= 0.1 * 2**i for i, w in enumerate(waits))


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ResourceNotFoundException", "ExpiredIteratorException"]
)
def test_call_with_backoff_raises_other_errors_at_once(code: str) -> None:
    call = FlakyCall(client_error(code))
    waits: list[float] = []

    with pytest.raises(ClientError) as raised:
        call_with_backoff(call, sleep=waits.append)

    assert raised.value.response["Error"]["Code"] == code
    assert call.calls == 1
    assert waits == []


def test_call_with_backoff_gives_up_after_max_attempts() -> None:
    call = FlakyCall(*(client_error(THROTTLED) for _ in range(10)))
    waits: list[float] = []

    with pytest.raises(ClientError) as raised:
        call_with_backoff(call, max_attempts=4, sleep=waits.append)

    assert raised.value.response["Error"]["Code"] == THROTTLED
    assert call.calls == 4
    assert len(waits) == 3


def test_call_with_backoff_does_not_catch_non_aws_errors() -> None:
    def broken() -> None:
        raise ConnectionResetError("peer went away")

    waits: list[float] = []
    with pytest.raises(ConnectionResetError):
        call_with_backoff(broken, sleep=waits.append)
    assert waits == []
