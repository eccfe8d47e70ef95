"""Resharding (kinesis-mock only): a child shard is read only after its parents are drained.

What kinesis-mock (npm ``kinesis-local`` 0.6.2, started by conftest with
``UPDATE_SHARD_COUNT_DURATION=200ms``) does, measured with plain boto3:

- ``UpdateShardCount(TargetShardCount=4, ScalingType=UNIFORM_SCALING)`` on 2 shards splits
  each one in two: shard 0 -> 2, 3 and shard 1 -> 4, 5, each child with ``ParentShardId`` set
  and no ``AdjacentParentShardId`` (a 4 -> 2 scale-down merges instead and sets both; a 2 -> 3
  splits only shard 0). The stream is ``UPDATING`` for about 0.25 s; a second UpdateShardCount
  in that time fails with ``ResourceInUseException``.
- The split happens when the call is made, not when the stream returns to ``ACTIVE``:
  PutRecords during ``UPDATING`` already go to the children (AWS keeps writing to the parents
  until the update completes).
- The closed parents keep their ``StartingSequenceNumber`` and get ``EndingSequenceNumber``
  ``9223372036854775807`` (Long.MaxValue, not the sequence number of their last record).
- ``GetRecords`` on a closed shard: the call that returns the last records has no
  ``NextShardIterator`` and lists ``ChildShards``; an iterator after the last record, or on
  a closed shard that never got a record, returns no records and no ``NextShardIterator``.
- ``MillisBehindLatest`` is the arrival time of the shard's newest record minus that of the
  last record returned, in ms (248, 162, then 0 for 15-record reads of rounds put 50 ms
  apart). Records of one PutRecords call share one arrival millisecond, so after a partial
  read of a burst it is 0 with records still waiting: "0" does not mean "at the tip" (see
  ``test_available_now_in_small_batches``). Arrival timestamps have millisecond precision.
- Records of one PutRecords call get sequence numbers in request order, per shard.

"In order per key" with micro-batches: within one shard the sequence number orders records;
across shards it means nothing. The source keeps each partition key in order when (a) a
child shard enters a batch only after the batch where its parents reached ``SHARD_END``, so
(b) in any one batch a key's records come from one shard, and ordering by (batch id,
sequence number) gives each key's counters in the order they were put. Both are checked:
(a) on the offsets Spark logged in the checkpoint, (b) on the rows foreachBatch received.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client, list_shards
from streamenrich.kinesis.positions import ShardPosition
from tests.support import (
    BatchCollector,
    iso_millis,
    read_stream,
    run_available_now,
    server_clock_lag_s,
    wait_active,
)

pytestmark = pytest.mark.kinesis_mock

KEYS = [f"key-{i:02d}" for i in range(20)]
BEFORE_SPLIT = range(0, 10)  # per-key counters put while the stream has 2 shards
AFTER_SPLIT = range(10, 20)  # counters put after the split to 4
TOTAL = len(KEYS) * (len(BEFORE_SPLIT) + len(AFTER_SPLIT))
DRAINED = str(ShardPosition.shard_end())
PARENTS = {
    "shardId-000000000002": ("shardId-000000000000",),
    "shardId-000000000003": ("shardId-000000000000",),
    "shardId-000000000004": ("shardId-000000000001",),
    "shardId-000000000005": ("shardId-000000000001",),
}

Delivery = tuple[int, str, str, str, int]  # batch id, shard, sequence number, key, counter
Placement = dict[tuple[str, int], tuple[str, str]]  # (key, counter) -> (shard, sequence)


def payload(key: str, counter: int) -> bytes:
    return json.dumps({"key": key, "n": counter}, sort_keys=True).encode()


def put_rounds(client: Any, stream: str, counters: range, pause_s: float = 0.0) -> Placement:
    """One PutRecords per counter value (all keys), in counter order; where each landed."""
    placed: Placement = {}
    for n in counters:
        response = client.put_records(
            StreamName=stream,
            Records=[{"PartitionKey": key, "Data": payload(key, n)} for key in KEYS],
        )
        assert response.get("FailedRecordCount", 0) == 0  # kinesis-mock never throttles
        for key, result in zip(KEYS, response["Records"], strict=True):
            placed[(key, n)] = (result["ShardId"], result["SequenceNumber"])
        if pause_s:
            time.sleep(pause_s)
    return placed


def put_burst(client: Any, stream: str, counters: range) -> Placement:
    """All keys and counters in one PutRecords call (kinesis-mock gives them one timestamp)."""
    pairs = [(key, n) for n in counters for key in KEYS]
    response = client.put_records(
        StreamName=stream,
        Records=[{"PartitionKey": key, "Data": payload(key, n)} for key, n in pairs],
    )
    assert response.get("FailedRecordCount", 0) == 0
    return {
        pair: (result["ShardId"], result["SequenceNumber"])
        for pair, result in zip(pairs, response["Records"], strict=True)
    }


def split_to_four(client: Any, stream: str) -> None:
    client.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(client, stream)
    lineage = {s.shard_id: (s.parents, s.is_closed) for s in list_shards(client, stream)}
    assert lineage == {
        "shardId-000000000000": ((), True),
        "shardId-000000000001": ((), True),
        **{child: (parents, False) for child, parents in PARENTS.items()},
    }


def options(endpoint: str, stream: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "streamName": stream,
        "endpointUrl": endpoint,
        "metadataPath": str(tmp_path / "metadata"),
        **extra,
    }


def deliveries(collector: BatchCollector) -> list[Delivery]:
    """Every row foreachBatch got, with its batch id; checks each payload's key."""
    out: list[Delivery] = []
    for batch_id, rows in sorted(collector.batches.items()):
        for row in rows:
            body = json.loads(bytes(row.data))
            assert body["key"] == row.partitionKey
            out.append((batch_id, row.shardId, row.sequenceNumber, row.partitionKey, body["n"]))
    return out


def logged_offsets(checkpoint: Path) -> dict[int, dict[str, str]]:
    """Batch id -> the source's end offset for that batch (the shard positions it started at).

    An offset-log file is ``v1``, the batch metadata, then one line per source.
    """
    offsets: dict[int, dict[str, str]] = {}
    for path in (checkpoint / "offsets").iterdir():
        if path.name.isdigit():
            lines = path.read_text().splitlines()
            offsets[int(path.name)] = json.loads(lines[2])["shards"]
    return offsets


def assert_exactly_once(rows: list[Delivery], placed: Placement) -> None:
    delivered = [(key, n) for _, _, _, key, n in rows]
    assert len(delivered) == len(placed)
    assert set(delivered) == set(placed)
    assert len(set(delivered)) == len(placed)
    # Each record came from the shard, with the sequence number, that PutRecords reported.
    assert {(key, n): (shard, seq) for _, shard, seq, key, n in rows} == placed


def assert_children_after_parents(
    rows: list[Delivery],
    offsets: dict[int, dict[str, str]],
    lineage: dict[str, tuple[str, ...]] = PARENTS,
) -> None:
    # (a) a child is in a batch's offset only when every parent is drained in that offset,
    # that is, the parents reached SHARD_END in an earlier batch.
    for batch, shards in offsets.items():
        for child, parents in lineage.items():
            if child in shards:
                assert all(shards.get(p) == DRAINED for p in parents), (batch, shards)
    # The rows agree: a child's first batch comes after its parents' last batch.
    batches_of: dict[str, set[int]] = defaultdict(set)
    for batch, shard, _, _, _ in rows:
        batches_of[shard].add(batch)
    for child, parents in lineage.items():
        for parent in parents:
            if batches_of[child] and batches_of[parent]:
                assert min(batches_of[child]) > max(batches_of[parent]), (child, parent)


def assert_in_order_per_key(
    rows: list[Delivery], expected: tuple[int, ...] = (*BEFORE_SPLIT, *AFTER_SPLIT)
) -> None:
    by_key: dict[str, list[Delivery]] = defaultdict(list)
    for row in rows:
        by_key[row[3]].append(row)
    for key, records in by_key.items():
        # (b) within one batch a key's records come from a single shard...
        shards_per_batch: dict[int, set[str]] = defaultdict(set)
        for batch, shard, _, _, _ in records:
            shards_per_batch[batch].add(shard)
        assert all(len(s) == 1 for s in shards_per_batch.values()), (key, shards_per_batch)
        # ...so (batch id, sequence number) orders them, and the counters come out as put.
        ordered = sorted(records, key=lambda r: (r[0], int(r[2])))
        assert [r[4] for r in ordered] == list(expected), key


def test_available_now_reads_parents_then_children(
    spark: Any, kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="reshard")
    placed = put_rounds(client, stream, BEFORE_SPLIT)
    split_to_four(client, stream)
    placed |= put_rounds(client, stream, AFTER_SPLIT)

    collector = BatchCollector()
    checkpoint = tmp_path / "checkpoint"
    query = run_available_now(
        spark, options(kinesis_mock_endpoint, stream, tmp_path), str(checkpoint), collector
    )
    assert query.exception() is None

    rows = deliveries(collector)
    assert_exactly_once(rows, placed)
    assert_children_after_parents(rows, logged_offsets(checkpoint))
    assert_in_order_per_key(rows)
    # One GetRecords reads a whole shard here, so: batch 0 drains both parents, batch 1
    # reads the four children, and the query stops (no empty batch).
    shards_per_batch: dict[int, set[str]] = defaultdict(set)
    for batch, shard, _, _, _ in rows:
        shards_per_batch[batch].add(shard)
    assert shards_per_batch == {
        0: {"shardId-000000000000", "shardId-000000000001"},
        1: set(PARENTS),
    }
    assert sorted(collector.batches) == [0, 1]
    assert logged_offsets(checkpoint) == {
        0: {"shardId-000000000000": "TRIM_HORIZON", "shardId-000000000001": "TRIM_HORIZON"},
        1: {
            "shardId-000000000000": DRAINED,
            "shardId-000000000001": DRAINED,
            **{child: "TRIM_HORIZON" for child in PARENTS},
        },
    }


def test_available_now_in_small_batches(
    spark: Any, kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    """Bursts (one PutRecords before and one after the split), 15 records a shard a batch.

    A burst shares one arrival millisecond, so kinesis-mock reports MillisBehindLatest 0
    after every partial read: availableNow must still read everything there, parents first.
    """
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="reshard")
    placed = put_burst(client, stream, BEFORE_SPLIT)
    split_to_four(client, stream)
    placed |= put_burst(client, stream, AFTER_SPLIT)

    collector = BatchCollector()
    checkpoint = tmp_path / "checkpoint"
    run_available_now(
        spark,
        options(kinesis_mock_endpoint, stream, tmp_path, maxRecordsPerShard="15"),
        str(checkpoint),
        collector,
    )

    rows = deliveries(collector)
    assert_exactly_once(rows, placed)
    assert_children_after_parents(rows, logged_offsets(checkpoint))
    assert_in_order_per_key(rows)
    per_batch: dict[tuple[int, str], int] = defaultdict(int)
    for batch, shard, _, _, _ in rows:
        per_batch[(batch, shard)] += 1
    # Each shard is read 15 records a batch, in consecutive batches, until it is empty.
    for shard in {s for _, s in per_batch}:
        batches = sorted(b for b, s in per_batch if s == shard)
        sizes = [per_batch[(b, shard)] for b in batches]
        total = sum(sizes)
        assert sizes == [15] * (total // 15) + ([total % 15] if total % 15 else []), shard
        assert batches == list(range(batches[0], batches[0] + len(batches))), shard
    assert all(collector.batches.values()), "no empty micro-batch"


@pytest.mark.parametrize("starting_position", ["TRIM_HORIZON", "LATEST"])
def test_reshard_while_query_runs(
    spark: Any,
    kinesis_mock_endpoint: str,
    kinesis_mock_stream: Any,
    tmp_path: Path,
    starting_position: str,
) -> None:
    """The split happens under a running query; with LATEST the children start after it."""
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="reshard")
    collector = BatchCollector()
    checkpoint = tmp_path / "checkpoint"
    # At most 15 records a shard a batch: the parents (about 100 records each) and the
    # children (about 50) take several batches however fast the batches run.
    source = options(
        kinesis_mock_endpoint,
        stream,
        tmp_path,
        startingPosition=starting_position,
        maxRecordsPerShard="15",
    )
    query = (
        read_stream(spark, source)
        .writeStream.foreachBatch(collector)
        .option("checkpointLocation", str(checkpoint))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        # The first trigger fixes the start (LATEST is pinned to that time).
        deadline = time.monotonic() + 60
        while query.lastProgress is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # Records must arrive after the pinned start by the server's clock too.
        time.sleep(max(0.0, server_clock_lag_s(client, kinesis_mock_stream(1, prefix="clock"))))
        # Rounds spaced out so that the parents are read over several batches, and the
        # split lands between two of them.
        placed = put_rounds(client, stream, BEFORE_SPLIT, pause_s=0.15)
        split_to_four(client, stream)
        placed |= put_rounds(client, stream, AFTER_SPLIT, pause_s=0.15)
        deadline = time.monotonic() + 120
        while len(collector.rows) < TOTAL and time.monotonic() < deadline:
            assert query.exception() is None
            time.sleep(0.2)
        query.processAllAvailable()
        time.sleep(1.0)  # a duplicate or stray batch would show up now
        assert query.exception() is None
    finally:
        query.stop()

    rows = deliveries(collector)
    assert_exactly_once(rows, placed)
    assert_children_after_parents(rows, logged_offsets(checkpoint))
    assert_in_order_per_key(rows)
    parent_batches = {b for b, s, _, _, _ in rows if s not in PARENTS}
    child_batches = {b for b, s, _, _, _ in rows if s in PARENTS}
    assert len(parent_batches) > 1, "the parents should be read over several batches"
    assert len(child_batches) > 1, "the children should be read over several batches"


def test_at_timestamp_start_holds_for_children_split_before_it(
    spark: Any, kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="reshard")
    put_rounds(client, stream, range(0, 5))  # in the parents, before the start
    split_to_four(client, stream)
    put_rounds(client, stream, range(5, 10))  # in the children, before the start
    time.sleep(0.3)
    # The start, on the server's arrival clock (kinesis-mock's may run behind ours).
    boundary = time.time() - server_clock_lag_s(client, kinesis_mock_stream(1, prefix="clock"))
    time.sleep(0.3)
    placed = put_rounds(client, stream, range(10, 20))  # in the children, after the start

    collector = BatchCollector()
    run_available_now(
        spark,
        options(
            kinesis_mock_endpoint,
            stream,
            tmp_path,
            startingPosition=f"AT_TIMESTAMP:{iso_millis(boundary)}",
        ),
        str(tmp_path / "checkpoint"),
        collector,
    )

    rows = deliveries(collector)
    assert sorted((key, n) for _, _, _, key, n in rows) == sorted(placed)


def test_latest_start_holds_for_children_split_before_it(
    spark: Any, kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="reshard")
    put_rounds(client, stream, range(0, 5))
    split_to_four(client, stream)
    put_rounds(client, stream, range(5, 10))  # in the children, before the query starts

    collector = BatchCollector()
    query = (
        read_stream(
            spark, options(kinesis_mock_endpoint, stream, tmp_path, startingPosition="LATEST")
        )
        .writeStream.foreachBatch(collector)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        deadline = time.monotonic() + 60
        while query.lastProgress is None and time.monotonic() < deadline:
            time.sleep(0.1)
        lag = server_clock_lag_s(client, kinesis_mock_stream(1, prefix="clock"))
        time.sleep(0.5 + max(0.0, lag))  # after the pinned start by the server's clock too
        placed = put_rounds(client, stream, range(10, 20))
        deadline = time.monotonic() + 60
        while len(collector.rows) < len(placed) and time.monotonic() < deadline:
            time.sleep(0.2)
        query.processAllAvailable()
        time.sleep(1.0)
        assert query.exception() is None
    finally:
        query.stop()

    rows = deliveries(collector)
    assert sorted((key, n) for _, _, _, key, n in rows) == sorted(placed)


# A 4 -> 2 scale-down as two MergeShards: kinesis-mock numbers each child next and sets both
# ParentShardId and AdjacentParentShardId.
MERGED = {
    "shardId-000000000004": ("shardId-000000000000", "shardId-000000000001"),
    "shardId-000000000005": ("shardId-000000000002", "shardId-000000000003"),
}


def merge(client: Any, stream: str, child: str) -> None:
    first, adjacent = MERGED[child]
    client.merge_shards(StreamName=stream, ShardToMerge=first, AdjacentShardToMerge=adjacent)
    wait_active(client, stream)
    lineage = {s.shard_id: s.parents for s in list_shards(client, stream)}
    assert lineage[child] == MERGED[child]


def test_merge_four_shards_into_two_across_available_now_runs(
    spark: Any, aws_kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    """Through the AWS-semantics layer (empty pages behind the tip, 5 reads/s per shard):
    records before, between and after two MergeShards, read by three availableNow runs of
    one query, at most 40 records a shard a batch. The first merge closes two shards that still hold
    unread records, the second merges shards the query is in the middle of; every record
    comes once, each key in order, each child only after both its parents were drained."""
    client = kinesis_client(endpoint_url=aws_kinesis_mock_endpoint)
    stream = kinesis_mock_stream(4, prefix="merge")
    source = options(
        aws_kinesis_mock_endpoint,
        stream,
        tmp_path,
        maxRecordsPerShard="40",
        # Room for a fresh iterator chain's 12 empty pages (5 calls/s) in one batch: no
        # batch only walks empty pages, so every batch has records.
        maxFetchTimeMs="5000",
    )
    checkpoint = tmp_path / "checkpoint"
    runs = [BatchCollector() for _ in range(3)]

    placed = put_rounds(client, stream, range(0, 5))
    run_available_now(spark, source, str(checkpoint), runs[0])
    placed |= put_rounds(client, stream, range(5, 10))  # unread when their shards close
    merge(client, stream, "shardId-000000000004")
    placed |= put_rounds(client, stream, range(10, 20))  # shards 2, 3 and child 4
    run_available_now(spark, source, str(checkpoint), runs[1])
    merge(client, stream, "shardId-000000000005")
    placed |= put_rounds(client, stream, range(20, 30))  # children 4 and 5
    run_available_now(spark, source, str(checkpoint), runs[2])

    # One checkpoint: batch ids go on from run to run.
    batch_ids = [set(run.batches) for run in runs]
    assert not (batch_ids[0] & batch_ids[1]) and not (batch_ids[1] & batch_ids[2])
    combined = BatchCollector()
    for run in runs:
        combined.batches.update(run.batches)
    rows = deliveries(combined)
    assert_exactly_once(rows, placed)
    assert_children_after_parents(rows, logged_offsets(checkpoint), MERGED)
    assert_in_order_per_key(rows, tuple(range(30)))
    # Each run read what was there when it started and nothing else.
    counters = [{n for _, _, _, _, n in deliveries(run)} for run in runs]
    assert counters == [set(range(0, 5)), set(range(5, 20)), set(range(20, 30))]
    shards_read = [{shard for _, shard, _, _, _ in deliveries(run)} for run in runs]
    assert shards_read[0] <= {f"shardId-00000000000{i}" for i in range(4)}
    assert "shardId-000000000004" in shards_read[1] and "shardId-000000000005" in shards_read[2]
    assert all(rows for run in runs for rows in run.batches.values()), "no empty micro-batch"
