"""How the source starts, stops and resumes: a new query's first batches, replays whose
state is missing or partial, and two attempts of one read.

Spark 4.3 calls ``initialOffset()`` more than once for a new query and always runs a batch 0,
planned from the second result to the first (or to the first ``latestOffset``). Records that
arrive between the driver's first probe and that batch must be delivered once.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import StreamingQueryException

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.errors import MetadataError
from streamenrich.kinesis.metadata import BatchMetadataStore
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.shard_reader import ShardReadPlan
from streamenrich.kinesis.source import _read_shard
from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics
from streamenrich.testing.proxy import KinesisProxy
from tests.support import (
    BatchCollector,
    multiset,
    put_all,
    read_stream,
    run_available_now,
    wait_for,
)

SHARD = "shardId-000000000000"


def _records(n: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"key-{i % 7}", f"{tag}-{i:04d}".encode()) for i in range(n)]


def _pairs(rows: list[Any]) -> dict[tuple[str, bytes], int]:
    return multiset((row.partitionKey, bytes(row.data)) for row in rows)


class PutAfterFirstProbe:
    """Puts records into the stream on the first call the source makes after its first probe.

    The first probe (``GetRecords`` with ``Limit=1``) finds the stream empty; the records then
    arrive before whatever the source does next: with Spark 4.3, that is batch 0.
    """

    def __init__(self, client: Any, stream: str, records: list[tuple[str, bytes]]) -> None:
        self._client = client
        self._stream = stream
        self._records = records
        self._probed = False
        self.put = threading.Event()

    def install(self, proxy: KinesisProxy) -> None:
        for operation in ("GetRecords", "GetShardIterator", "ListShards", "DescribeStream"):
            proxy.fail(operation, "NeverAnswered", when=self._hook(operation))

    def _hook(self, operation: str) -> Any:
        def when(request: dict[str, Any]) -> bool:
            if self.put.is_set():
                return False
            if operation == "GetRecords" and request.get("Limit") == 1 and not self._probed:
                self._probed = True
                return False
            if self._probed:
                put_all(self._client, self._stream, self._records)
                self.put.set()
            return False  # never fails the call: only puts the records first

        return when


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "LATEST"])
def test_records_arriving_while_a_new_query_starts_come_once(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path, position: str
) -> None:
    stream = moto_stream(shards=1)
    client = kinesis_client(endpoint_url=moto_endpoint)
    records = _records(40, "start")
    with KinesisProxy(moto_endpoint) as proxy:
        hook = PutAfterFirstProbe(client, stream, records)
        hook.install(proxy)
        collector = BatchCollector()
        options = {
            "streamName": stream,
            "endpointUrl": proxy.endpoint_url,
            "metadataPath": str(tmp_path / "metadata"),
            "startingPosition": position,
        }
        query = (
            read_stream(spark, options)
            .writeStream.foreachBatch(collector)
            .option("checkpointLocation", str(tmp_path / "cp"))
            .trigger(processingTime="200 milliseconds")
            .start()
        )
        try:
            assert hook.put.wait(60), "the source never probed the stream"
            wait_for(lambda: len(collector.rows) >= len(records), 60)
            # A second delivery would come in the next batches, at once: give them time.
            time.sleep(3.0)
        finally:
            query.stop()
        assert proxy.failures == []
    assert _pairs(collector.rows) == multiset(records)
    assert len({(r.shardId, r.sequenceNumber) for r in collector.rows}) == len(records)


def test_replay_with_its_state_gone_fails_instead_of_reading_afresh(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    """A restart that cannot find the crashed batch's recorded ends (another working
    directory, a restored checkpoint) must not read a new, larger range in its place: with a
    batch-idempotent sink the records between the two ends would be lost."""
    options, checkpoint, _ = _crash_in_batch_1(spark, moto_endpoint, moto_stream, tmp_path)
    shutil.rmtree(tmp_path / "metadata")  # the state did not come along with the checkpoint

    with pytest.raises(StreamingQueryException, match="cannot be replayed exactly"):
        run_available_now(spark, options, checkpoint, BatchCollector())


def test_replay_with_partly_written_state_replays_what_was_recorded(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    """A shard whose read never finished in the crashed batch has no record: it is read
    afresh, the others repeat exactly; every record is delivered once overall."""
    options, checkpoint, crashing = _crash_in_batch_1(spark, moto_endpoint, moto_stream, tmp_path)
    (run_dir,) = [p for p in (tmp_path / "metadata").iterdir() if p.is_dir()]
    # Spark's batch 1 is the source's batch 1 (batch 0 had data from the first probe).
    (run_dir / "1" / "shardId-000000000001.json").unlink()

    restarted = BatchCollector()
    run_available_now(spark, options, checkpoint, restarted)

    crashed = crashing.failed[1]
    replayed = restarted.batches[1]
    kept = [r for r in crashed if r.shardId == SHARD]
    assert sorted((r.sequenceNumber, bytes(r.data)) for r in replayed if r.shardId == SHARD) == (
        sorted((r.sequenceNumber, bytes(r.data)) for r in kept)
    )
    delivered = crashing.rows + restarted.rows
    assert _pairs(delivered) == multiset(_records(300, "before") + _records(100, "during"))
    assert len({(r.shardId, r.sequenceNumber) for r in delivered}) == len(delivered)


def test_two_attempts_of_one_read_the_first_record_wins(
    moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    """A late attempt that read a different range fails; it never replaces the record."""
    stream = moto_stream(shards=1)
    client = kinesis_client(endpoint_url=moto_endpoint)
    put_all(client, stream, _records(30, "a"))
    store = BatchMetadataStore(str(tmp_path), "run")
    plan = ShardReadPlan(
        stream_name=stream,
        shard_id=SHARD,
        start=ShardPosition.trim_horizon(),
        max_records=None,
        max_fetch_time_ms=5_000,
        cutoff_ms=None,
        replay=None,
    )
    # Attempt A starts, reads, and is slow to record; attempt B (a retry) reads later, after
    # more records came, and records first.
    attempt_a = _read_shard(store, client, 0, plan)
    first_rows = sum(batch.num_rows for batch in _take_all_but_record(attempt_a))
    put_all(client, stream, _records(20, "b"))
    rows_b = sum(batch.num_rows for batch in _read_shard(store, client, 0, plan))
    assert (first_rows, rows_b) == (30, 50)

    with pytest.raises(MetadataError, match="another attempt recorded 50 records"):
        list(attempt_a)  # A finishes: its shorter range must not replace B's
    stored = store.read(0, SHARD)
    assert stored is not None and stored.count == 50


def _take_all_but_record(reader: Any) -> list[Any]:
    """The record batches of a read, stopping before it writes its record."""
    taken = []
    for batch in reader:
        taken.append(batch)
        if sum(b.num_rows for b in taken) >= 30:
            break
    return taken


def test_a_replay_whose_iterators_expire_reads_exactly_the_recorded_range(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    """Pages of 20 records (as a 10 MiB page cut would make them) and about a third of the
    batch reads' iterators expired (30 in all): the first attempt and the replay renew right
    after the last record delivered, and the replay delivers exactly the crashed batch."""
    stream = moto_stream(shards=1)
    client = kinesis_client(endpoint_url=moto_endpoint)
    before = _records(300, "before")
    put_all(client, stream, before)
    semantics = dataclasses.replace(AwsSemantics.off(), page_max_records=20)
    with AwsKinesisProxy(moto_endpoint, semantics) as proxy:
        proxy.fail(
            "GetRecords",
            "ExpiredIteratorException",
            share=0.3,
            times=30,
            when=lambda request: request.get("Limit") not in (1, 2),  # not the probes
        )
        options = {
            "streamName": stream,
            "endpointUrl": proxy.endpoint_url,
            "metadataPath": str(tmp_path / "metadata"),
            "maxRecordsPerShard": "90",
        }
        checkpoint = str(tmp_path / "cp")
        crashing = BatchCollector(fail_on_batch=1)
        with pytest.raises(StreamingQueryException, match="injected crash in batch 1"):
            run_available_now(spark, options, checkpoint, crashing)
        during = _records(100, "during")
        put_all(client, stream, during)
        replayed_before = len(proxy.injected("GetRecords"))
        restarted = BatchCollector()
        run_available_now(spark, options, checkpoint, restarted)
        expired_in_replay = len(proxy.injected("GetRecords")) - replayed_before
        assert proxy.failures == []

    crashed = crashing.failed[1]
    assert len(crashed) == 90
    assert [r.sequenceNumber for r in restarted.batches[1]] == [r.sequenceNumber for r in crashed]
    assert expired_in_replay > 0
    delivered = crashing.rows + restarted.rows
    assert _pairs(delivered) == multiset(before + during)
    assert len({r.sequenceNumber for r in delivered}) == len(delivered)


def _crash_in_batch_1(
    spark: Any, endpoint: str, new_stream: Any, tmp_path: Path
) -> tuple[dict[str, str], str, BatchCollector]:
    """300 records in 2 shards read 50 a shard a batch; batch 1 crashes after its read and
    before its commit; 100 more records arrive while the query is down. Returns the options,
    the checkpoint and the crashed run's collector."""
    stream = new_stream(shards=2)
    client = kinesis_client(endpoint_url=endpoint)
    put_all(client, stream, _records(300, "before"))
    options = {
        "streamName": stream,
        "endpointUrl": endpoint,
        "metadataPath": str(tmp_path / "metadata"),
        "maxRecordsPerShard": "50",
    }
    checkpoint = str(tmp_path / "cp")
    crashing = BatchCollector(fail_on_batch=1)
    with pytest.raises(StreamingQueryException, match="injected crash in batch 1"):
        run_available_now(spark, options, checkpoint, crashing)
    put_all(client, stream, _records(100, "during"))
    return options, checkpoint, crashing
