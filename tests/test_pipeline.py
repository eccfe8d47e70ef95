"""The streaming enrichment job end to end on a local Kinesis endpoint (moto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamenrich.enrich import RuleSet, enrich
from streamenrich.kinesis.client import kinesis_client
from streamenrich.pipeline import (
    CHECKPOINT_MANAGER_KEY,
    LOCAL_CHECKPOINT_MANAGER,
    EnrichmentJob,
    StreamNames,
    _is_local_path,
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

    assert report.records_read == 2_000
    assert report.balanced
    assert len(report.batches) >= 3  # 1,000 records per shard, 400 per batch

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
