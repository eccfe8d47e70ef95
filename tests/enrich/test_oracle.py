"""20,000 generated records through the transform, checked record by record against the oracle."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from streamenrich.enrich import BUCKETS, enrich
from streamenrich.producer import RUT_SPELLINGS, generate_events, spell_rut
from streamenrich.reference.contract import REGISTRY_COLUMNS
from tests.enrich import oracle
from tests.enrich.conftest import source_rows

N_EVENTS = 20_000
# Every reason the generator can provoke; the test fails if one of them never occurs.
REQUIRED_REASONS = {
    "not_utf8",
    "not_json",
    "invalid_rut",
    "bad_value:event_id",
    "bad_value:channel",
    "bad_value:region",
    "bad_value:event_time",
    *(f"missing_field:{name}" for name in oracle.FIELDS),
    *(f"bad_type:{name}" for name in oracle.FIELDS),
}
OUTPUT_KEYS = [*oracle.FIELDS, "person", "rules", "record_id", "source", "processed_at"]


def _spelling(raw: str, canonical: str) -> str:
    return next(s for s in RUT_SPELLINGS if spell_rut(canonical, s) == raw)


def _event_of(row: Any) -> dict[str, Any]:
    event = {name: row[name] for name in oracle.FIELDS}
    event["event_time"] = event["event_time"].astimezone(UTC)
    return event


def _expected_event(expected: oracle.Expected) -> dict[str, Any]:
    assert expected.event is not None
    return {**expected.event, "event_time": expected.event["event_time"].astimezone(UTC)}


@pytest.mark.slow
def test_transform_agrees_with_the_oracle(
    spark: Any, people: list[Any], registry: Any, shipped_rules: Any, source_frame: Any
) -> None:
    known = [person[0] for person in people]
    records = generate_events(N_EVENTS, known, seed=20251201, malformed_share=0.15)
    rows = source_rows(records)
    by_id = {f"{row[2]}:{row[4]}": row for row in rows}
    tz = spark.conf.get("spark.sql.session.timeZone")
    lookup = {person[0]: person for person in people}
    expected = {
        record_id: oracle.expect(row[0], lookup, shipped_rules.names, tz)
        for record_id, row in by_id.items()
    }
    assert set(shipped_rules.names) == set(oracle.RULES), "the oracle must model every rule"

    started = datetime.now(UTC)
    enriched = enrich(source_frame(rows), registry, shipped_rules)
    got = {name: frame.collect() for name, frame in enriched.frames().items()}
    finished = datetime.now(UTC)

    # The four outputs partition the input exactly.
    ids = {name: [row["record_id"] for row in got[name]] for name in BUCKETS}
    assert sum(len(v) for v in ids.values()) == N_EVENTS
    assert set().union(*map(set, ids.values())) == set(by_id)
    for name in BUCKETS:
        want = {rid for rid, exp in expected.items() if exp.bucket == name}
        assert set(ids[name]) == want, name

    for row in got["dead_letter"]:
        exp, source = expected[row["record_id"]], by_id[row["record_id"]]
        assert (row["reason"], row["original"]) == (exp.reason, source[0])
        assert (row["partitionKey"], row["streamName"], row["shardId"]) == (
            source[3],
            source[1],
            source[2],
        )
        letter = json.loads(row["data"])
        assert base64.b64decode(letter["data_base64"]) == source[0]
        assert (letter["reason"], letter["record_id"]) == (exp.reason, row["record_id"])
        assert letter["source"]["sequence_number"] == source[4]

    for row in got["unknown"]:
        assert _event_of(row) == _expected_event(expected[row["record_id"]])
        assert row["partitionKey"] == by_id[row["record_id"]][3]

    for row in got["unmatched"]:
        exp = expected[row["record_id"]]
        assert _event_of(row) == _expected_event(exp)
        assert row["person"].asDict() == exp.person

    for row in got["matched"]:
        exp = expected[row["record_id"]]
        record = json.loads(row["data"])
        assert list(record) == OUTPUT_KEYS
        processed_at = datetime.fromisoformat(record.pop("processed_at"))
        assert started.replace(microsecond=0) <= processed_at <= finished
        assert record == oracle.output_record(exp, by_id[row["record_id"]])
        assert exp.event is not None and row["partitionKey"] == exp.event["rut"]
        assert list(row["rules"]) == list(exp.rules)

    # The generated input really covers what the oracle claims to check.
    reasons = Counter(exp.reason for exp in expected.values() if exp.reason)
    assert set(reasons) >= REQUIRED_REASONS, REQUIRED_REASONS - set(reasons)
    valid = [
        (json.loads(by_id[rid][0] or b""), exp.event)
        for rid, exp in expected.items()
        if exp.event is not None
    ]
    assert {_spelling(doc["rut"], event["rut"]) for doc, event in valid} == set(RUT_SPELLINGS)
    assert any(event["rut"].endswith("K") for _, event in valid)
    fired = Counter(name for exp in expected.values() for name in exp.rules)
    assert set(fired) == set(shipped_rules.names)
    amounts = [event["amount"] for _, event in valid]
    assert max(amounts) == 2**63 - 1 and min(amounts) == -(2**63)
    event_ids = Counter(event["event_id"] for _, event in valid)
    assert max(event_ids.values()) > 1, "duplicate event ids are kept, not dropped"
    merchants = {event["merchant"] for _, event in valid}
    assert {"北京烤鸭 Santiago", "🛒 Mercado Central", 'Joe\'s "Deli" \\ Bar'} <= merchants
    assert all(len(ids[name]) > 100 for name in BUCKETS), {k: len(v) for k, v in ids.items()}

    assert tuple(REGISTRY_COLUMNS) == tuple(exp_person_keys(got))


def exp_person_keys(got: dict[str, list[Any]]) -> list[str]:
    """The person object's keys, in order, as the output record has them."""
    return list(json.loads(got["matched"][0]["data"])["person"])
