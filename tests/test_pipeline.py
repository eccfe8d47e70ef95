"""The streaming enrichment job end to end on a local Kinesis endpoint (moto)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from streamenrich.delivery import Delivery
from streamenrich.enrich import RuleSet, enrich
from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.sink import MAX_RECORD_BYTES
from streamenrich.pipeline import (
    CHECKPOINT_MANAGER_KEY,
    LOCAL_CHECKPOINT_MANAGER,
    AccountingError,
    EnrichmentJob,
    StreamNames,
    _is_local_path,
    data_loss_gaps,
)
from streamenrich.producer import generate_events
from streamenrich.reference import load_registry
from tests.support import drain, put_all

ROOT = Path(__file__).resolve().parent.parent
PERSONS = ROOT / "reference_data" / "persons.csv"
RULES = ROOT / "reference_data" / "rules.yaml"


@pytest.fixture
def streams(moto_stream: Any) -> StreamNames:
    return StreamNames(
        input=moto_stream(shards=2), output=moto_stream(shards=1), dead_letter=moto_stream(shards=1)
    )


def _static_oracle(spark: Any, records: list[dict[str, Any]], registry: Any) -> dict[str, set[str]]:
    """The same records through the static transform: the record ids of each bucket."""
    frame = spark.createDataFrame(
        [
            (
                r["Data"],
                "s",
                r["shard"],
                r["PartitionKey"],
                r["SequenceNumber"],
                r["ApproximateArrivalTimestamp"],
            )
            for r in records
        ],
        "data BINARY, streamName STRING, shardId STRING, partitionKey STRING, "
        "sequenceNumber STRING, approximateArrivalTimestamp TIMESTAMP",
    )
    out = enrich(frame, registry, RuleSet.from_file(RULES))
    return {
        name: {r.record_id for r in df.select("record_id").collect()}
        for name, df in out.frames().items()
    }


def test_available_now_run_publishes_exactly_the_matches(
    spark: Any, moto_endpoint: str, streams: StreamNames, tmp_path: Path
) -> None:
    registry = load_registry(spark, PERSONS)
    known = [r.rut for r in registry.select("rut").collect()]
    events = generate_events(2_000, known, seed=5, unknown_share=0.15, malformed_share=0.1)
    client = kinesis_client(endpoint_url=moto_endpoint)
    put_all(client, streams.input, events)

    job = EnrichmentJob(
        spark,
        streams,
        registry,
        RuleSet.from_file(RULES),
        checkpoint_dir=tmp_path / "cp",
        endpoint_url=moto_endpoint,
        max_records_per_shard=400,
    )
    report = job.run("available_now")

    # The source's count of every batch (Spark's numInputRows, counted apart from the
    # buckets) equals its buckets exactly; each batch read at most 400 records per shard.
    assert report.records_read == 2_000 == report.records_classified
    assert report.balanced
    assert len(report.batches) >= 3  # 1,000 records per shard, 400 per batch
    assert [b.read for b in report.batches] == [b.classified for b in report.batches]
    assert all(0 < b.read <= 800 for b in report.batches[:-1])
    assert report.summary()["records_classified"] == 2_000
    assert (report.data_loss, report.summary()["data_loss_gaps"]) == ({}, 0)

    inputs = []
    for shard in client.list_shards(StreamName=streams.input)["Shards"]:
        for record in drain_shard(client, streams.input, shard["ShardId"]):
            inputs.append({**record, "shard": shard["ShardId"]})
    expected = _static_oracle(spark, inputs, registry)
    assert {k: len(v) for k, v in expected.items()} == report.totals

    published = [json.loads(r["Data"]) for r in drain(client, streams.output)]
    assert {p["record_id"] for p in published} == expected["matched"]
    assert len(published) == len(expected["matched"])
    rejected = [json.loads(r["Data"]) for r in drain(client, streams.dead_letter)]
    assert {d["record_id"] for d in rejected} == expected["dead_letter"]
    assert report.latency_ms(0.5) is not None

    # A local checkpoint is written by the manager that forks no process per file, and it
    # holds an offset and a commit for every batch.
    assert spark.conf.get(CHECKPOINT_MANAGER_KEY) == LOCAL_CHECKPOINT_MANAGER
    offsets = {p.name for p in (tmp_path / "cp" / "offsets").iterdir() if p.name.isdigit()}
    commits = {p.name for p in (tmp_path / "cp" / "commits").iterdir() if p.name.isdigit()}
    assert len(offsets) >= len(report.batches) and offsets == commits

    # A second run on the same checkpoint with nothing new reads nothing and publishes nothing.
    again = job.run("available_now")
    assert again.records_read == 0
    assert len(drain(client, streams.output)) == len(published)


@pytest.mark.parametrize(
    ("location", "local"),
    [
        ("/tmp/cp", True),
        ("relative/cp", True),
        ("file:///tmp/cp", True),
        ("s3a://bucket/cp", False),
        ("hdfs://nn:8020/cp", False),
    ],
)
def test_only_local_checkpoints_change_the_file_manager(location: str, local: bool) -> None:
    assert _is_local_path(location) is local


def drain_shard(client: Any, stream: str, shard_id: str) -> list[dict[str, Any]]:
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while True:
        response = client.get_records(ShardIterator=iterator, Limit=10_000)
        out.extend(response["Records"])
        if not response["Records"]:
            return out
        iterator = response["NextShardIterator"]


# -- what does not fit, and what does not add up ----------------------------------------------


@pytest.fixture
def one_shard_streams(moto_stream: Any) -> StreamNames:
    return StreamNames(
        input=moto_stream(shards=1), output=moto_stream(shards=1), dead_letter=moto_stream(shards=1)
    )


def _job(spark: Any, streams: StreamNames, endpoint: str, tmp_path: Path, **kw: Any) -> Any:
    return EnrichmentJob(
        spark,
        streams,
        load_registry(spark, PERSONS),
        RuleSet.from_file(RULES),
        checkpoint_dir=tmp_path / "cp",
        endpoint_url=endpoint,
        **kw,
    )


def test_an_event_that_enriches_past_1_mib_is_dead_lettered_and_the_batch_succeeds(
    spark: Any, moto_endpoint: str, one_shard_streams: StreamNames, tmp_path: Path
) -> None:
    streams = one_shard_streams
    registry = load_registry(spark, PERSONS)
    person = registry.first()
    events = generate_events(20, [person.rut], seed=3, unknown_share=0, malformed_share=0)
    # A purchase over the credit limit (a rule fires: matched) whose merchant fills the input
    # record to exactly 1 MiB: the enriched record (person, rules, source...) is larger.
    event = json.loads(events[0][1])
    event.update(event_id="evt-huge", amount=person.credit_limit * 10, merchant="")
    key = person.rut
    filler = MAX_RECORD_BYTES - len(key) - len(json.dumps(event).encode())
    event["merchant"] = "m" * filler
    huge = json.dumps(event).encode()
    assert len(huge) + len(key) == MAX_RECORD_BYTES
    client = kinesis_client(endpoint_url=moto_endpoint)
    results = put_all(client, streams.input, [*events[:10], (key, huge), *events[10:]])
    huge_id = f"{results[10]['ShardId']}:{results[10]['SequenceNumber']}"

    report = _job(spark, streams, moto_endpoint, tmp_path).run("available_now")

    assert report.records_read == 21 == report.records_classified
    assert report.totals["dead_letter"] == 1
    published = [json.loads(r["Data"]) for r in drain(client, streams.output)]
    assert len(published) == report.totals["matched"] > 0
    assert huge_id not in {p["record_id"] for p in published}
    [entry] = [json.loads(r["Data"]) for r in drain(client, streams.dead_letter)]
    assert entry["record_id"] == huge_id
    assert entry["reason"] == "output_too_large"
    assert entry["partition_key"] == person.rut
    assert entry["source"]["sequence_number"] == results[10]["SequenceNumber"]
    assert entry["data_truncated"] is True and entry["data_length"] > MAX_RECORD_BYTES


@dataclass(frozen=True)
class MiscountingDelivery(Delivery):
    """Drops (or repeats) the first row each task is given, before it is counted."""

    repeat: bool = False

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return super().__call__(self._miscount(batches))

    def _miscount(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        done = False
        for batch in batches:
            if not done and batch.num_rows:
                done = True
                batch = (
                    pa.concat_batches([batch.slice(0, 1), batch]) if self.repeat else batch.slice(1)
                )
            yield batch


class MiscountingJob(EnrichmentJob):
    repeat = False

    def delivery(self) -> Delivery:
        honest = super().delivery()
        return MiscountingDelivery(
            honest.streams, honest.region, honest.endpoint_url, repeat=self.repeat
        )


@pytest.mark.parametrize(("repeat", "buckets"), [(False, 49), (True, 51)], ids=["lost", "twice"])
def test_a_batch_whose_buckets_miss_the_source_count_fails_the_run(
    spark: Any,
    moto_endpoint: str,
    one_shard_streams: StreamNames,
    tmp_path: Path,
    repeat: bool,
    buckets: int,
) -> None:
    streams = one_shard_streams
    registry = load_registry(spark, PERSONS)
    known = [r.rut for r in registry.select("rut").collect()]
    events = generate_events(200, known, seed=11, unknown_share=0.2, malformed_share=0.2)
    put_all(kinesis_client(endpoint_url=moto_endpoint), streams.input, events)
    job = MiscountingJob(
        spark,
        streams,
        registry,
        RuleSet.from_file(RULES),
        checkpoint_dir=tmp_path / "cp",
        endpoint_url=moto_endpoint,
        max_records_per_shard=50,
    )
    job.repeat = repeat

    with pytest.raises(AccountingError) as failure:
        job.run("available_now")

    message = str(failure.value)
    assert message.startswith(
        f"batch 0: the source delivered 50 records but the buckets hold {buckets} ("
    )
    # Found when batch 1 started, before any of it was read or published: only 0 committed.
    commits = {p.name for p in (tmp_path / "cp" / "commits").iterdir() if p.name.isdigit()}
    assert commits == {"0"}


def test_a_last_batch_whose_buckets_miss_the_source_count_fails_the_run(
    spark: Any, moto_endpoint: str, one_shard_streams: StreamNames, tmp_path: Path
) -> None:
    streams = one_shard_streams
    registry = load_registry(spark, PERSONS)
    known = [r.rut for r in registry.select("rut").collect()]
    events = generate_events(30, known, seed=12, unknown_share=0.2, malformed_share=0.2)
    put_all(kinesis_client(endpoint_url=moto_endpoint), streams.input, events)
    job = MiscountingJob(
        spark,
        streams,
        registry,
        RuleSet.from_file(RULES),
        checkpoint_dir=tmp_path / "cp",
        endpoint_url=moto_endpoint,
    )

    with pytest.raises(
        AccountingError,
        match=r"^batch 0: the source delivered 30 records but the buckets hold 29 \(",
    ):
        job.run("available_now")


def test_a_continuous_run_stopped_while_events_arrive_checks_every_batch_it_delivered(
    spark: Any, moto_endpoint: str, one_shard_streams: StreamNames, tmp_path: Path
) -> None:
    streams = one_shard_streams
    registry = load_registry(spark, PERSONS)
    known = [r.rut for r in registry.select("rut").collect()]
    events = generate_events(3_000, known, seed=13, unknown_share=0.2, malformed_share=0.2)
    client = kinesis_client(endpoint_url=moto_endpoint)
    stop = threading.Event()

    def produce() -> None:
        # Records keep arriving until the run ends: the run stops with batches in flight.
        for i in itertools.cycle(range(0, len(events), 20)):
            if stop.is_set():
                return
            put_all(client, streams.input, events[i : i + 20])
            time.sleep(0.05)

    put_all(client, streams.input, events[:300])
    job = _job(spark, streams, moto_endpoint, tmp_path, max_records_per_shard=100)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        report = job.run("continuous", run_seconds=30, trigger_interval_ms=100)
    finally:
        stop.set()
        producer.join()

    commits = {int(p.name) for p in (tmp_path / "cp" / "commits").iterdir() if p.name.isdigit()}
    assert {b.batch_id for b in report.batches} == commits
    assert report.batches and report.balanced
    assert [b.read for b in report.batches] == [b.classified for b in report.batches]
    published = drain(client, streams.output)
    ids = [json.loads(r["Data"])["record_id"] for r in published]
    assert len(set(ids)) == len(ids)  # nothing published twice in one run
    # Every counted match is out; a batch stopped in flight may have published too before it
    # was counted (at-least-once: the next run publishes it again, and counts it then).
    assert len(ids) >= report.totals["matched"]


def test_data_loss_gaps_are_the_runs_share_of_the_offsets_count() -> None:
    def progress(start: str | None, end: str) -> Any:
        return SimpleNamespace(sources=[SimpleNamespace(startOffset=start, endOffset=end)])

    first = progress(None, '{"batch": 0}')  # a new query starts from no offset
    assert data_loss_gaps([first]) == {}
    resumed = progress('{"gaps": {"s0": 1}}', '{"gaps": {"s0": 1}}')
    later = progress('{"gaps": {"s0": 1}}', '{"gaps": {"s0": 3, "s1": 1}}')
    assert data_loss_gaps([resumed, later]) == {"s0": 2, "s1": 1}
    assert data_loss_gaps([]) == {}
