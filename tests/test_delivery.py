"""``Delivery``: one task's rows published by bucket and counted, against moto (no Spark)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from streamenrich.delivery import Delivery, DeliveryStats
from streamenrich.enrich.transform import CLASSIFIED_COLUMNS
from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.sink import MAX_RECORD_BYTES
from tests.support import drain


def _batch(rows: list[tuple[str, str | None, str | None, datetime]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array([f"r{i}" for i in range(len(rows))]),
            pa.array([r[0] for r in rows]),
            pa.array([None] * len(rows), pa.string()),
            pa.array([r[1] for r in rows], pa.string()),
            pa.array([r[2] for r in rows], pa.string()),
            pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        ],
        names=list(CLASSIFIED_COLUMNS),
    )


def test_rows_go_to_their_streams_and_every_bucket_is_counted(
    moto_endpoint: str, moto_stream: Any
) -> None:
    output, dead = moto_stream(shards=1), moto_stream(shards=1)
    arrived = datetime.now(UTC) - timedelta(seconds=2)
    first = [("matched", f"{i}-K", json.dumps({"m": i}), arrived) for i in range(700)]
    first += [("unknown", None, None, arrived)] * 30
    second = [("dead_letter", "key", json.dumps({"d": i}), arrived) for i in range(12)]
    second += [("unmatched", None, None, arrived)] * 5 + [("matched", "1-9", '{"m": -1}', arrived)]
    delivery = Delivery({"matched": output, "dead_letter": dead}, endpoint_url=moto_endpoint)

    rows = [
        tuple(r.values())
        for batch in delivery(iter([_batch(first), _batch(second)]))
        for r in batch.to_pylist()
    ]
    stats = DeliveryStats.from_rows(rows)  # type: ignore[arg-type]

    assert stats.counts == {"matched": 701, "unknown": 30, "dead_letter": 12, "unmatched": 5}
    assert sum(stats.latency.values()) == 748
    assert min(stats.latency) >= 200  # at least 2 s in 10 ms buckets
    assert stats.put_calls == {output: 3, dead: 1}  # 500 + 200, then 1; 12
    client = kinesis_client(endpoint_url=moto_endpoint)
    published = Counter(r["Data"] for r in drain(client, output))
    assert published == Counter(
        [json.dumps({"m": i}).encode() for i in range(700)] + [b'{"m": -1}']
    )
    assert sorted(json.loads(r["Data"])["d"] for r in drain(client, dead)) == list(range(12))


def _output(record_id: str, merchant_bytes: int) -> str:
    """A matched output record whose JSON is ``merchant_bytes`` plus a small fixed part."""
    return json.dumps(
        {
            "event_id": f"e-{record_id}",
            "merchant": "m" * merchant_bytes,
            "record_id": record_id,
            "source": {"stream": "in", "shard": "shardId-0", "sequence_number": "42"},
            "processed_at": "2025-03-01T17:05:00.000000Z",
        }
    )


def _run(delivery: Delivery, batches: list[pa.RecordBatch]) -> DeliveryStats:
    rows = [tuple(r.values()) for out in delivery(iter(batches)) for r in out.to_pylist()]
    return DeliveryStats.from_rows(rows)  # type: ignore[arg-type]


def test_a_matched_record_over_1_mib_is_dead_lettered_and_the_batch_succeeds(
    moto_endpoint: str, moto_stream: Any
) -> None:
    output, dead = moto_stream(shards=1), moto_stream(shards=1)
    arrived = datetime.now(UTC)
    key = "12345678-5"
    room = MAX_RECORD_BYTES - len(key) - len(_output("fits", 0))
    exact = _output("fits", room)  # exactly 1 MiB with its key
    huge = _output("huge", room + 1)  # one byte more
    assert len(exact) + len(key) == MAX_RECORD_BYTES == len(huge) + len(key) - 1
    first = [("matched", key, '{"m": 0}', arrived), ("unknown", None, None, arrived)]
    second = [("matched", key, huge, arrived), ("matched", key, exact, arrived)]
    second += [("dead_letter", "pk", '{"d": 1}', arrived)]
    delivery = Delivery({"matched": output, "dead_letter": dead}, endpoint_url=moto_endpoint)

    stats = _run(delivery, [_batch(first), _batch(second)])

    # Counted where it went: four buckets that still add up to the five rows.
    assert stats.counts == {"matched": 2, "unknown": 1, "dead_letter": 2}
    assert stats.rerouted == {"output_too_large": 1}
    client = kinesis_client(endpoint_url=moto_endpoint)
    assert sorted(bytes(r["Data"]) for r in drain(client, output)) == sorted(
        [b'{"m": 0}', exact.encode()]
    )
    entries = {r["PartitionKey"]: bytes(r["Data"]) for r in drain(client, dead)}
    assert entries["pk"] == b'{"d": 1}'
    refused = json.loads(entries[key])
    assert list(refused) == [
        "record_id",
        "reason",
        "data_base64",
        "data_length",
        "data_truncated",
        "partition_key",
        "source",
        "processed_at",
    ]
    assert refused["record_id"] == "huge" and refused["reason"] == "output_too_large"
    assert refused["partition_key"] == key
    assert refused["source"] == {"stream": "in", "shard": "shardId-0", "sequence_number": "42"}
    assert refused["processed_at"] == "2025-03-01T17:05:00.000000Z"
    # The refused record, as much of it as fits (base64 is 4/3 of it): a prefix, its length.
    kept = base64.b64decode(refused["data_base64"])
    assert refused["data_length"] == len(huge) and refused["data_truncated"] is True
    assert huge.encode().startswith(kept)
    assert len(entries[key]) + len(key) <= MAX_RECORD_BYTES
    assert len(entries[key]) + len(key) > MAX_RECORD_BYTES - 4  # the longest prefix that fits


def test_a_dead_letter_entry_over_1_mib_carries_a_prefix_of_the_original(
    moto_endpoint: str, moto_stream: Any
) -> None:
    output, dead = moto_stream(shards=1), moto_stream(shards=1)
    arrived = datetime.now(UTC)
    original = bytes(range(256)) * 3_500  # 896,000 bytes: its base64 is 1,194,668
    small = b"not json"
    entry = {
        "record_id": "shardId-0:7",
        "reason": "not_json",
        "data_base64": base64.b64encode(original).decode(),
        "partition_key": "pk",
        "source": {"stream": "in", "shard": "shardId-0", "sequence_number": "7"},
        "processed_at": "2025-03-01T17:05:00.000000Z",
    }
    fits = {**entry, "record_id": "shardId-0:8", "data_base64": base64.b64encode(small).decode()}
    rows = [
        ("dead_letter", "pk", json.dumps(entry), arrived),
        ("dead_letter", "pk2", json.dumps(fits), arrived),
    ]
    delivery = Delivery({"matched": output, "dead_letter": dead}, endpoint_url=moto_endpoint)

    stats = _run(delivery, [_batch(rows)])

    assert stats.counts == {"dead_letter": 2}
    assert stats.rerouted == {}
    published = {
        r["PartitionKey"]: bytes(r["Data"])
        for r in drain(kinesis_client(endpoint_url=moto_endpoint), dead)
    }
    assert json.loads(published["pk2"]) == fits  # an entry that fits is untouched
    cut = json.loads(published["pk"])
    assert {
        k: v for k, v in cut.items() if k not in ("data_base64", "data_length", "data_truncated")
    } == {k: v for k, v in entry.items() if k != "data_base64"}
    assert cut["data_length"] == len(original) and cut["data_truncated"] is True
    kept = base64.b64decode(cut["data_base64"])
    assert 0 < len(kept) < len(original) and original.startswith(kept)
    assert MAX_RECORD_BYTES - 4 < len(published["pk"]) + len("pk") <= MAX_RECORD_BYTES
