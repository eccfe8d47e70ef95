"""The Kinesis source against real local endpoints (moto and kinesis-mock)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import StreamingQueryException

from streamenrich.kinesis.client import kinesis_client
from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics
from streamenrich.testing.proxy import Answer
from tests.support import (
    BatchCollector,
    multiset,
    put_all,
    read_stream,
    run_available_now,
    wait_for,
)

BIG = 1_000_000  # near the 1 MiB record limit (data + partition key <= 1,048,576 bytes)


def _payloads(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        key = f"key-{rng.randrange(200)}"
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(1, 300))  # arbitrary bytes, not UTF-8
        else:
            data = f'{{"i": {i}, "s": "ñandú-{seed}"}}'.encode()
        records.append((key, data))
    return records


def _options(stream: str, endpoint: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "streamName": stream,
        "endpointUrl": endpoint,
        "metadataPath": str(tmp_path / "metadata"),
        **extra,
    }


def _pairs(rows: list[Any]) -> dict[tuple[str, bytes], int]:
    return multiset((row.partitionKey, bytes(row.data)) for row in rows)


def _identities(rows: list[Any]) -> list[tuple[str, str]]:
    return [(row.shardId, row.sequenceNumber) for row in rows]


def test_reads_exactly_the_records_then_only_new_ones(
    spark: Any, endpoint: str, new_stream: Any, tmp_path: Path
) -> None:
    stream = new_stream(shards=4)
    client = kinesis_client(endpoint_url=endpoint)
    first = _payloads(10_000, seed=1)
    put_all(client, stream, first)
    big = [(f"big-{i}", os.urandom(BIG)) for i in range(3)]
    for key, data in big:
        client.put_record(StreamName=stream, PartitionKey=key, Data=data)
    options = _options(stream, endpoint, tmp_path)
    checkpoint = str(tmp_path / "checkpoint")

    run1 = BatchCollector()
    run_available_now(spark, options, checkpoint, run1)
    assert _pairs(run1.rows) == multiset(first + big)
    assert len(set(_identities(run1.rows))) == len(first) + len(big)
    assert {row.streamName for row in run1.rows} == {stream}
    assert len({row.shardId for row in run1.rows}) == 4

    second = _payloads(2_000, seed=2)
    put_all(client, stream, second)
    run2 = BatchCollector()
    run_available_now(spark, options, checkpoint, run2)
    assert _pairs(run2.rows) == multiset(second)
    assert not set(_identities(run1.rows)) & set(_identities(run2.rows))


def test_admission_control_caps_records_per_shard_per_batch(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    records = _payloads(1_000, seed=3)
    put_all(kinesis_client(endpoint_url=moto_endpoint), stream, records)
    options = _options(stream, moto_endpoint, tmp_path, maxRecordsPerShard="100")

    collector = BatchCollector()
    query = run_available_now(spark, options, str(tmp_path / "cp"), collector)

    assert not query.isActive
    assert _pairs(collector.rows) == multiset(records)
    per_batch_shard = Counter(
        (batch_id, row.shardId) for batch_id, rows in collector.batches.items() for row in rows
    )
    assert max(per_batch_shard.values()) == 100
    assert len(collector.batches) >= 1_000 // (2 * 100)
    assert all(rows for rows in collector.batches.values()), "no empty micro-batch"


def test_max_partitions_groups_shards_into_fewer_tasks(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    """5 shards, maxPartitions=2: every batch reads in at most 2 tasks, the first (every shard
    active) in tasks of shards 0,2,4 and 1,3; every record once, each shard in order."""
    stream = moto_stream(shards=5)
    records = _payloads(1_500, seed=11)
    put_all(kinesis_client(endpoint_url=moto_endpoint), stream, records)
    options = _options(stream, moto_endpoint, tmp_path, maxRecordsPerShard="150", maxPartitions="2")

    collector = BatchCollector(track_partitions=True)
    run_available_now(spark, options, str(tmp_path / "cp"), collector)

    assert _pairs(collector.rows) == multiset(records)
    assert len(set(_identities(collector.rows))) == len(records)
    shards = sorted({row.shardId for row in collector.rows})
    assert len(shards) == 5
    expected = {frozenset(shards[0::2]), frozenset(shards[1::2])}
    with_data = [b for b, rows in collector.batches.items() if rows]
    assert len(with_data) >= 2
    assert collector.partitions[with_data[0]] == expected
    assert all(len(collector.partitions[b]) <= 2 for b in with_data)
    for shard in shards:
        sequence = [int(r.sequenceNumber) for r in collector.rows if r.shardId == shard]
        assert sequence == sorted(sequence)


@pytest.mark.parametrize("max_partitions", [None, "2"])
def test_replayed_batch_reads_the_same_records(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path, max_partitions: str | None
) -> None:
    """Also with shards grouped into fewer tasks than shards (``maxPartitions``)."""
    stream = moto_stream(shards=3)
    client = kinesis_client(endpoint_url=moto_endpoint)
    before = _payloads(900, seed=4)
    put_all(client, stream, before)
    grouped = {"maxPartitions": max_partitions} if max_partitions else {}
    options = _options(stream, moto_endpoint, tmp_path, maxRecordsPerShard="120", **grouped)
    checkpoint = str(tmp_path / "cp")

    crashing = BatchCollector(fail_on_batch=1)
    with pytest.raises(StreamingQueryException, match="injected crash in batch 1"):
        run_available_now(spark, options, checkpoint, crashing)
    # More records arrive while the query is down: a replay that re-read "up to a limit"
    # from the start would now see a different range.
    during = _payloads(500, seed=5)
    put_all(client, stream, during)

    restarted = BatchCollector()
    run_available_now(spark, options, checkpoint, restarted)

    crashed_rows = crashing.failed[1]
    assert crashed_rows, "the crashed batch had read records"
    assert sorted(_identities(restarted.batches[1])) == sorted(_identities(crashed_rows))
    assert _pairs(restarted.batches[1]) == _pairs(crashed_rows)
    delivered = crashing.rows + restarted.rows
    assert _pairs(delivered) == multiset(before + during)
    assert len(set(_identities(delivered))) == len(delivered)


def test_starting_position_latest_and_at_timestamp(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    client = kinesis_client(endpoint_url=moto_endpoint)
    old = _payloads(300, seed=6)
    put_all(client, stream, old)
    time.sleep(1.2)
    boundary = time.time()
    time.sleep(0.2)
    new = _payloads(200, seed=7)
    put_all(client, stream, new)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(boundary))
    stamp += f".{int((boundary % 1) * 1000):03d}Z"
    at_ts = BatchCollector()
    run_available_now(
        spark,
        _options(stream, moto_endpoint, tmp_path, startingPosition=f"AT_TIMESTAMP:{stamp}"),
        str(tmp_path / "cp-ts"),
        at_ts,
    )
    assert _pairs(at_ts.rows) == multiset(new)

    latest = BatchCollector()
    query = (
        read_stream(spark, _options(stream, moto_endpoint, tmp_path, startingPosition="LATEST"))
        .writeStream.foreachBatch(latest)
        .option("checkpointLocation", str(tmp_path / "cp-latest"))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        wait_for(lambda: query.lastProgress is not None, 60)
        newest = _payloads(150, seed=8)
        put_all(client, stream, newest)
        wait_for(lambda: len(latest.rows) >= len(newest), 60)
        time.sleep(1.0)
    finally:
        query.stop()
    assert _pairs(latest.rows) == multiset(newest)


def test_idle_stream_makes_no_empty_batches(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    client = kinesis_client(endpoint_url=moto_endpoint)
    collector = BatchCollector()
    query = (
        read_stream(spark, _options(stream, moto_endpoint, tmp_path))
        .writeStream.foreachBatch(collector)
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(processingTime="100 milliseconds")
        .start()
    )
    try:
        wait_for(lambda: query.lastProgress is not None, 60)
        time.sleep(3.0)
        # Spark may run batch 0 of a new query to record its initial offset (as with Kafka):
        # on an empty stream it is empty. Past that, an idle stream runs nothing.
        assert set(collector.batches) <= {0}, "an empty stream ran micro-batches"
        assert not any(collector.batches.values())
        records = _payloads(50, seed=9)
        put_all(client, stream, records)
        wait_for(lambda: len(collector.rows) >= 50, 60)
        batches_after_data = len(collector.batches)
        time.sleep(3.0)
        assert len(collector.batches) == batches_after_data, "idle stream ran micro-batches"
    finally:
        query.stop()
    assert _pairs(collector.rows) == multiset(records)
    assert all(rows for batch_id, rows in collector.batches.items() if batch_id > 0)


def test_slow_shard_is_cut_by_max_fetch_time(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    client = kinesis_client(endpoint_url=moto_endpoint)
    shards = client.list_shards(StreamName=stream)["Shards"]
    busy_hash = shards[0]["HashKeyRange"]["StartingHashKey"]
    # Every record on the first shard; the second shard stays idle.
    records = [(f"k{i}", f"r{i}".encode()) for i in range(25_000)]
    for start in range(0, len(records), 500):
        client.put_records(
            StreamName=stream,
            Records=[
                {"PartitionKey": k, "Data": d, "ExplicitHashKey": busy_hash}
                for k, d in records[start : start + 500]
            ],
        )
    options = _options(stream, moto_endpoint, tmp_path, maxFetchTimeMs="1")

    collector = BatchCollector()
    run_available_now(spark, options, str(tmp_path / "cp"), collector)

    # maxFetchTimeMs=1 stops each shard's read after its first GetRecords call (10,000
    # records at most), so the busy shard takes several batches and none waits for it.
    sizes = [len(rows) for _, rows in sorted(collector.batches.items())]
    assert sizes == [10_000, 10_000, 5_000]
    assert {row.shardId for row in collector.rows} == {shards[0]["ShardId"]}
    assert _pairs(collector.rows) == multiset(records)


class _ShardTrackingProxy(AwsKinesisProxy):
    """Also knows which shard each of its iterator tokens reads, from the replies: a
    GetShardIterator token belongs to the request's shard, a NextShardIterator to the shard
    of the token it came from."""

    def __init__(self, upstream_url: str, semantics: AwsSemantics) -> None:
        super().__init__(upstream_url, semantics)
        self._shard_of: dict[str, str] = {}
        self._shard_lock = threading.Lock()

    def shard_of(self, token: str | None) -> str | None:
        with self._shard_lock:
            return self._shard_of.get(token or "")

    def _dispatch(
        self,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        body: bytes,
    ) -> Answer:
        answer = super()._dispatch(operation, method, path, headers, request, body)
        if answer.status == 200 and operation in ("GetShardIterator", "GetRecords"):
            reply = json.loads(answer.body)
            if operation == "GetShardIterator":
                shard, token = request.get("ShardId"), reply.get("ShardIterator")
            else:
                shard, token = (
                    self.shard_of(request.get("ShardIterator")),
                    reply.get("NextShardIterator"),
                )
            if shard and token:
                with self._shard_lock:
                    self._shard_of[token] = shard
        return answer


class _TimedCollector(BatchCollector):
    """A collector that also notes when each batch's rows were read (``time.monotonic``,
    the clock of the proxy's exchanges): the read happens inside ``foreachBatch``."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: dict[int, tuple[float, float]] = {}

    def __call__(self, frame: Any, batch_id: int) -> None:
        started = time.monotonic()
        super().__call__(frame, batch_id)
        self.windows[batch_id] = (started, time.monotonic())


def test_idle_shard_does_not_wait_for_max_fetch_time(
    spark: Any, engine_endpoint: str, new_stream: Any, tmp_path: Path
) -> None:
    """maxFetchTimeMs=10 s, one shard busy for three batches (1,000 records a shard a batch),
    the other idle, through the AWS-semantics layer: in every batch the idle shard's read
    makes exactly one GetRecords call, an empty page at the tip, and ends there; it never
    polls until the time limit (a batch would then last 10 s)."""
    stream = new_stream(shards=2)
    client = kinesis_client(endpoint_url=engine_endpoint)  # fast fill, no write limits
    shards = client.list_shards(StreamName=stream)["Shards"]
    busy, idle = shards[0]["ShardId"], shards[1]["ShardId"]
    busy_hash = shards[0]["HashKeyRange"]["StartingHashKey"]
    records = [(f"k{i}", f"r{i}".encode()) for i in range(2_500)]
    for start in range(0, len(records), 500):
        client.put_records(
            StreamName=stream,
            Records=[
                {"PartitionKey": k, "Data": d, "ExplicitHashKey": busy_hash}
                for k, d in records[start : start + 500]
            ],
        )
    semantics = dataclasses.replace(AwsSemantics.real(), retention_s=None)
    collector = _TimedCollector()
    with _ShardTrackingProxy(engine_endpoint, semantics) as proxy:
        options = _options(
            stream, proxy.endpoint_url, tmp_path, maxFetchTimeMs="10000", maxRecordsPerShard="1000"
        )
        run_available_now(spark, options, str(tmp_path / "cp"), collector)
        exchanges = proxy.exchanges
        reads = [
            (e.at, proxy.shard_of(e.shard), e.records, e.status)
            for e in exchanges
            if e.operation == "GetRecords"
        ]
    assert proxy.failures == []

    assert _pairs(collector.rows) == multiset(records)
    sizes = [len(rows) for _, rows in sorted(collector.batches.items())]
    assert sizes == [1_000, 1_000, 500]
    assert {row.shardId for row in collector.rows} == {busy}
    assert all(shard in (busy, idle) for _, shard, _, _ in reads)
    for batch_id, (started, ended) in collector.windows.items():
        idle_reads = [r for r in reads if r[1] == idle and started <= r[0] <= ended]
        # One call, answered (not throttled), with no records: the tip, and the read ends.
        assert [(records, status) for _, _, records, status in idle_reads] == [(0, 200)], batch_id


def test_missing_stream_name_fails_with_the_option_name(spark: Any, moto_endpoint: str) -> None:
    with pytest.raises(Exception, match="streamName"):
        query = (
            read_stream(spark, {"endpointUrl": moto_endpoint})
            .writeStream.format("noop")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(60)
