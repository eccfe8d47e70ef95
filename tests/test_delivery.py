"""``Delivery``: one task's rows published by bucket and counted, against moto (no Spark)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from streamenrich.delivery import Delivery, DeliveryStats
from streamenrich.enrich.transform import CLASSIFIED_COLUMNS
from streamenrich.kinesis.client import kinesis_client
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
