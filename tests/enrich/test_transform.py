"""The transform on a few hand-made records, its input checks, and on a streaming DataFrame."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from streamenrich.enrich import BUCKETS, InputSchemaError, enrich
from streamenrich.kinesis.source import SOURCE_SCHEMA
from streamenrich.producer import generate_events
from streamenrich.reference.rut import format_rut
from tests.enrich.conftest import source_rows


def _event(rut: str, **changes: Any) -> bytes:
    doc = {
        "event_id": "e",
        "rut": rut,
        "amount": 1_000,
        "merchant": "Copec",
        "channel": "pos",
        "region": "CL-RM",
        "event_time": "2025-03-01T12:00:00Z",
        **changes,
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize("persist", [False, True])
def test_each_bucket_on_hand_made_records(
    spark: Any,
    registry: Any,
    people: list[Any],
    shipped_rules: Any,
    source_frame: Any,
    persist: bool,
) -> None:
    quiet = next(p for p in people if not p[5] and p[4] != "high" and p[6] >= 10_000_000)
    dotted = f"{int(quiet[0][:-2]):,}".replace(",", ".") + quiet[0][-2:]
    records = [
        ("k1", _event(quiet[0])),  # unmatched: no rule fires
        ("k2", _event(dotted, channel="atm", event_time="2025-03-01T02:00:00Z")),  # matched
        ("k3", _event(format_rut(99_999_998))),  # unknown: the registry's bodies are < 30M
        ("k4", b"not json"),  # dead letter
        ("k5", b"{" * 200),  # dead letter whose base64 is longer than one MIME line (76)
    ]
    rows = source_rows(records, shards=1)
    out = enrich(source_frame(rows), registry, shipped_rules, persist=persist)
    got = {name: frame.collect() for name, frame in out.frames().items()}
    assert len(out.persisted) == (2 if persist else 0)
    assert all(frame.is_cached for frame in out.persisted)
    out.unpersist()
    ids = [f"{row[2]}:{row[4]}" for row in rows]
    assert {name: [r["record_id"] for r in got[name]] for name in BUCKETS} == {
        "unmatched": [ids[0]],
        "matched": [ids[1]],
        "unknown": [ids[2]],
        "dead_letter": [ids[3], ids[4]],
    }
    matched = got["matched"][0]
    assert (matched["partitionKey"], list(matched["rules"])) == (quiet[0], ["atm_small_hours"])
    assert json.loads(matched["data"])["person"]["full_name"] == quiet[1]
    assert got["unknown"][0]["rut"] == format_rut(99_999_998)
    assert (got["dead_letter"][0]["reason"], got["dead_letter"][0]["original"]) == (
        "not_json",
        b"not json",
    )
    # One base64 line, as strict decoders need (Spark's base64 breaks lines by default).
    long_one = json.loads(got["dead_letter"][1]["data"])["data_base64"]
    assert "\r" not in long_one and "\n" not in long_one
    assert base64.b64decode(long_one, validate=True) == b"{" * 200


def test_inputs_are_checked_up_front(
    spark: Any, registry: Any, shipped_rules: Any, source_frame: Any
) -> None:
    events = source_frame(source_rows([("k", b"{}")]))
    with pytest.raises(InputSchemaError, match="events has no column 'shardId'"):
        enrich(events.drop("shardId"), registry, shipped_rules)
    narrow = registry.withColumn("credit_limit", registry["credit_limit"].cast("int"))
    with pytest.raises(InputSchemaError, match="'credit_limit' is int, expected bigint"):
        enrich(events, narrow, shipped_rules)


@pytest.mark.slow
def test_streaming_dataframe(
    spark: Any, registry: Any, people: list[Any], shipped_rules: Any, tmp_path: Path
) -> None:
    records = generate_events(3_000, [p[0] for p in people], seed=5, malformed_share=0.2)
    rows = source_rows(records)
    for part in (rows[:1_500], rows[1_500:]):
        spark.createDataFrame(part, SOURCE_SCHEMA).coalesce(1).write.mode("append").parquet(
            str(tmp_path / "in")
        )
    static = enrich(spark.read.parquet(str(tmp_path / "in")), registry, shipped_rules)
    expected = {name: {r["record_id"] for r in f.collect()} for name, f in static.frames().items()}

    stream = spark.readStream.schema(SOURCE_SCHEMA).option("maxFilesPerTrigger", 1)
    events = stream.parquet(str(tmp_path / "in"))
    with pytest.raises(ValueError, match="persist=True needs a static DataFrame"):
        enrich(events, registry, shipped_rules, persist=True)
    enriched = enrich(events, registry, shipped_rules)
    queries = {}
    for name, frame in enriched.frames().items():
        table = f"enriched_{name}_{uuid.uuid4().hex[:8]}"
        queries[name] = (
            table,
            frame.writeStream.format("memory")
            .queryName(table)
            .option("checkpointLocation", str(tmp_path / "checkpoints" / name))
            .trigger(availableNow=True)
            .start(),
        )
    for name, (table, query) in queries.items():
        assert query.awaitTermination(120), f"{name} did not finish"
        assert query.exception() is None
        assert {r["record_id"] for r in spark.table(table).collect()} == expected[name], name
        progress = query.lastProgress
        assert progress is not None and progress["batchId"] >= 1  # two files: two batches
    assert sum(map(len, expected.values())) == len(rows)
