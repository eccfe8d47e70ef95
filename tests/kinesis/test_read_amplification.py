"""Single read: records fetched from Kinesis (counted at the wire) vs records delivered."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from streamenrich.kinesis.client import kinesis_client
from streamenrich.testing.proxy import KinesisProxy
from tests.support import BatchCollector, multiset, put_all, run_available_now

POLICIES = Path(__file__).resolve().parents[2] / "deployments" / "iam"


def _policy_actions(name: str) -> set[str]:
    policy = json.loads((POLICIES / name).read_text())
    return {
        action.split(":", 1)[1]
        for statement in policy["Statement"]
        for action in statement["Action"]
        if action.startswith("kinesis:")
    }


def test_each_record_is_fetched_once(
    spark: Any, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    stream = moto_stream(shards=4)
    client = kinesis_client(endpoint_url=moto_endpoint)
    rng = random.Random(21)
    first = [(f"k{rng.randrange(999)}", rng.randbytes(64)) for _ in range(10_000)]
    put_all(client, stream, first)

    with KinesisProxy(moto_endpoint) as proxy:
        options = {
            "streamName": stream,
            "endpointUrl": proxy.endpoint_url,
            "metadataPath": str(tmp_path / "m"),
            "maxRecordsPerShard": "1000",
        }
        collector = BatchCollector()
        run_available_now(spark, options, str(tmp_path / "cp"), collector)
        # A second run from the checkpoint with nothing new reads (almost) nothing.
        idle = BatchCollector()
        run_available_now(spark, options, str(tmp_path / "cp"), idle)
        fetched, calls = proxy.records_fetched, proxy.calls

    delivered = len(collector.rows)
    assert multiset((r.partitionKey, bytes(r.data)) for r in collector.rows) == multiset(first)
    assert idle.rows == []
    ratio = fetched / delivered
    print(
        f"fetched {fetched} / delivered {delivered} = {ratio:.4f}; batches {len(collector.batches)}"
    )
    # Exact: every record once, plus the one record the first probe saw (it stops at the first
    # shard with data). Later batches continue from the iterator the previous read handed
    # on, and the last probes find nothing. The second run's probes start afresh at each of
    # the 4 shards' last record (AT it, to know it is still there): one record each.
    assert fetched == delivered + 1 + 4
    # Every call the source made is allowed by the published least-privilege policy.
    assert set(calls) <= _policy_actions("kinesis-source-policy.json")
    assert calls["GetRecords"] > 0


def test_sink_needs_only_put_records(spark: Any, moto_endpoint: str, moto_stream: Any) -> None:
    stream = moto_stream(shards=1)
    with KinesisProxy(moto_endpoint) as proxy:
        frame = spark.createDataFrame(
            [(f"k{i}", f"v{i}") for i in range(50)], "partitionKey STRING, data STRING"
        )
        (
            frame.write.format("kinesis")
            .option("streamName", stream)
            .option("endpointUrl", proxy.endpoint_url)
            .mode("append")
            .save()
        )
        calls = proxy.calls
    assert set(calls) == {"PutRecords"} <= _policy_actions("kinesis-sink-policy.json")
