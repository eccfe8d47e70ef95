"""The Spark source against what real Kinesis does and the emulators do not, reproduced by
:class:`~streamenrich.testing.aws_kinesis.AwsKinesisProxy`: empty pages behind the tip,
per-shard rate limits, records trimmed by retention, closed shards that leave the stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import StreamingQueryException

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.metadata import ShardGap
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.shard_reader import ShardReader, ShardReadPlan
from streamenrich.pipeline import data_loss_gaps
from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics
from tests.support import BatchCollector, multiset, put_all, run_available_now, wait_active

SHARD = "shardId-000000000000"


def _records(n: int, tag: str, keys: int = 9) -> list[tuple[str, bytes]]:
    return [(f"key-{i % keys}", f"{tag}-{i:05d}".encode()) for i in range(n)]


def _pairs(rows: list[Any]) -> dict[tuple[str, bytes], int]:
    return multiset((row.partitionKey, bytes(row.data)) for row in rows)


def _options(stream: str, proxy: AwsKinesisProxy, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "streamName": stream,
        "endpointUrl": proxy.endpoint_url,
        "metadataPath": str(tmp_path / "metadata"),
        **extra,
    }


@pytest.fixture
def aws(engine_endpoint: str) -> Iterator[AwsKinesisProxy]:
    """AWS's behaviour in front of the test's engine, with counters of this test alone;
    nothing is trimmed unless the test says."""
    semantics = dataclasses.replace(AwsSemantics.real(), retention_s=None)
    with AwsKinesisProxy(engine_endpoint, semantics) as proxy:
        yield proxy
    assert proxy.failures == []


def test_empty_pages_behind_the_tip_do_not_stall_a_shard(
    spark: Any, engine_endpoint: str, new_stream: Any, aws: AwsKinesisProxy, tmp_path: Path
) -> None:
    """Every fresh iterator chain starts with 12 empty pages (MillisBehindLatest > 0), more
    than one batch's time limit walks (5 calls/s per shard): each batch goes on from the
    iterator the last one stopped at, and the run ends with every record, once."""
    stream = new_stream(shards=2)
    records = _records(3_000, "walk")
    put_all(kinesis_client(endpoint_url=engine_endpoint), stream, records)

    collector = BatchCollector()
    run_available_now(
        spark,
        _options(stream, aws, tmp_path, maxFetchTimeMs="500"),
        str(tmp_path / "cp"),
        collector,
        timeout_s=240,
    )

    assert _pairs(collector.rows) == multiset(records)
    assert len({(r.shardId, r.sequenceNumber) for r in collector.rows}) == len(records)
    assert aws.empty_pages >= 24  # both shards walked their whole empty stretch
    # Only the first read of each shard (and the first probe) needed a new iterator.
    assert aws.calls["GetShardIterator"] <= 3


@pytest.mark.parametrize("fail_on_data_loss", [True, False])
def test_records_trimmed_before_they_were_read(
    spark: Any,
    engine_endpoint: str,
    new_stream: Any,
    aws: AwsKinesisProxy,
    tmp_path: Path,
    fail_on_data_loss: bool,
) -> None:
    """The query stops after 100 records; the next 100 arrive and the first 50 of them are
    trimmed before it restarts. By default the restart fails naming the shard and the range;
    with failOnDataLoss=false it delivers the 50 left and reports one gap in its offsets."""
    stream = new_stream(shards=1)
    client = kinesis_client(endpoint_url=engine_endpoint)
    first = _records(100, "first")
    put_all(client, stream, first)
    options = _options(stream, aws, tmp_path, failOnDataLoss=str(fail_on_data_loss).lower())
    checkpoint = str(tmp_path / "cp")
    before = BatchCollector()
    run_available_now(spark, options, checkpoint, before)
    assert _pairs(before.rows) == multiset(first)
    last_read = max(int(r.sequenceNumber) for r in before.rows)

    second = _records(100, "second")
    placed = put_all(client, stream, second)
    kept_from = placed[50]["SequenceNumber"]
    aws.trim(stream, SHARD, kept_from)

    after = BatchCollector()
    if fail_on_data_loss:
        with pytest.raises(StreamingQueryException) as failure:
            run_available_now(spark, options, checkpoint, after)
        message = str(failure.value)
        assert "DataLossError" in message
        assert f"shard {SHARD}" in message
        assert f"after sequence number {last_read} and before sequence number {kept_from}" in (
            message
        )
        assert after.rows == []
        return
    query = run_available_now(spark, options, checkpoint, after)
    assert _pairs(after.rows) == multiset(second[50:])
    offset = query.lastProgress["sources"][0]["endOffset"]
    assert _as_dict(offset)["gaps"] == {SHARD: 1}
    # What the enrichment run's report takes from the progress: one stretch, in this run.
    assert data_loss_gaps(query.recentProgress) == {SHARD: 1}


@pytest.mark.kinesis_mock
@pytest.mark.parametrize("fail_on_data_loss", [True, False])
def test_a_parent_shard_that_leaves_the_stream_before_it_is_drained(
    spark: Any,
    kinesis_mock_endpoint: str,
    kinesis_mock_stream: Any,
    tmp_path: Path,
    fail_on_data_loss: bool,
) -> None:
    """A split parent read in part, then expired (past retention) while the query is down:
    its unread records are gone. By default that fails the query with the shard's name; with
    failOnDataLoss=false the query drops the parent, reads the children, and counts a gap.
    Before, the query failed with ResourceNotFoundException on every batch and restart."""
    # Batches of exactly 50 parent records: no empty pages in this test.
    semantics = dataclasses.replace(AwsSemantics.real(), retention_s=None, empty_pages_behind=0)
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(1, prefix="expire")
    parent = _records(120, "parent")
    put_all(client, stream, parent)
    client.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    wait_active(client, stream)
    children = _records(60, "child")
    put_all(client, stream, children)

    with AwsKinesisProxy(kinesis_mock_endpoint, semantics) as aws:
        options = _options(
            stream,
            aws,
            tmp_path,
            maxRecordsPerShard="50",
            failOnDataLoss=str(fail_on_data_loss).lower(),
        )
        checkpoint = str(tmp_path / "cp")
        crashing = BatchCollector(fail_on_batch=1)
        with pytest.raises(StreamingQueryException, match="injected crash in batch 1"):
            run_available_now(spark, options, checkpoint, crashing)
        assert _pairs(crashing.batches[0]) == multiset(parent[:50])
        aws.expire_shard(stream, SHARD)

        restarted = BatchCollector()
        if fail_on_data_loss:
            with pytest.raises(StreamingQueryException) as failure:
                run_available_now(spark, options, checkpoint, restarted)
            assert "DataLossError" in str(failure.value)
            assert SHARD in str(failure.value)
            return
        query = run_available_now(spark, options, checkpoint, restarted)
        offset = _as_dict(query.lastProgress["sources"][0]["endOffset"])

    assert _pairs(restarted.rows) == multiset(children)
    assert offset["gaps"] == {SHARD: 1}
    assert SHARD not in offset["shards"]


def test_available_now_stops_at_the_first_record_past_its_cutoff() -> None:
    """Arrival stamps are approximate and need not grow with sequence numbers. A page whose
    second record arrived after the run's cut-off ends the run's read there, even though the
    third arrived before it: delivering the third would move the position past the second,
    which the next run would then never read. (No emulator stamps records out of order:
    this fault is made at the boto3 boundary.)"""
    stamps = [1_000, 3_000, 2_000, 2_500]
    client = ScriptedClient(
        [{"SequenceNumber": str(10 + i), "ms": ms} for i, ms in enumerate(stamps)]
    )
    plan = ShardReadPlan(
        stream_name="s",
        shard_id=SHARD,
        start=ShardPosition.trim_horizon(),
        max_records=None,
        max_fetch_time_ms=1_000,
        cutoff_ms=2_600,
        replay=None,
    )
    reader = ShardReader(client, plan)
    delivered = [
        seq for batch in reader.batches() for seq in batch.column("sequenceNumber").to_pylist()
    ]
    assert delivered == ["10"]
    assert reader.result is not None
    assert (reader.result.last, reader.result.count, reader.result.caught_up) == ("10", 1, True)
    assert reader.result.iterator is None  # the page's next iterator is past record 11


def test_shard_gap_round_trips_through_the_metadata_json() -> None:
    from streamenrich.kinesis.metadata import ShardBatchRecord

    record = ShardBatchRecord(
        SHARD, "5", "9", 3, False, False, 4, "it", 7, None, ShardGap("2", "5", None)
    )
    assert ShardBatchRecord.from_json(record.to_json()) == record


class ScriptedClient:
    """One shard's records as GetRecords pages of the whole shard (a fault no server makes)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._records = records

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        page = self._records[start : start + Limit]
        return {
            "Records": [
                {
                    "SequenceNumber": r["SequenceNumber"],
                    "PartitionKey": "k",
                    "Data": b"d",
                    "ApproximateArrivalTimestamp": datetime.fromtimestamp(r["ms"] / 1000, UTC),
                }
                for r in page
            ],
            "NextShardIterator": str(start + len(page)),
            "MillisBehindLatest": 0,
        }


def _as_dict(offset: Any) -> dict[str, Any]:
    import json

    return offset if isinstance(offset, dict) else json.loads(offset)
