"""Event parsing: each dead-letter reason, the precedence between them, and the parsed values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from streamenrich.enrich import parse_events
from streamenrich.kinesis.source import SOURCE_SCHEMA
from tests.enrich.conftest import source_rows

GOOD: dict[str, Any] = {
    "event_id": "e-1",
    "rut": " 12.345.678-5 ",
    "amount": 125_000,
    "merchant": "Café Ñuñoa",
    "channel": "pos",
    "region": "CL-RM",
    "event_time": "2025-03-01T14:05:00.25-03:00",
}


def event(**changes: Any) -> bytes:
    """GOOD with fields changed; a value of ``...`` removes the field."""
    doc = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    return json.dumps(doc, ensure_ascii=False).encode()


CASES: dict[str, tuple[bytes | None, str | None]] = {
    "valid": (event(), None),
    "valid, extra field ignored": (event(extra={"nested": [1]}), None),
    "valid, surrounding whitespace": (b" \n" + event() + b"\r\n ", None),
    "valid, max amount": (event(amount=2**63 - 1), None),
    "valid, k check digit lower-case": (event(rut="10000013-k"), None),
    "valid, brackets in a string": (event(merchant="x}] y"), None),
    "invalid utf-8": (b'{"event_id": "caf\xe9"}', "not_utf8"),
    "overlong encoding": (b"\xc0\xaf", "not_utf8"),
    "not_utf8 beats everything": (b"\xff" + event(rut="bad"), "not_utf8"),
    "empty": (b"", "not_json"),
    "null payload": (None, "not_json"),
    "plain text": (b"hello", "not_json"),
    "truncated": (event()[:-3], "not_json"),
    "array": (b"[" + event() + b"]", "not_json"),
    "json null": (b"null", "not_json"),
    "trailing text": (event() + b" x", "not_json"),
    "trailing bracket": (event() + b"]", "not_json"),
    "two objects": (event() + event(), "not_json"),
    "duplicate key": (event()[:-1] + b', "amount": 1}', "not_json"),
    "NaN": (event(amount=0).replace(b'"amount": 0', b'"amount": NaN'), "not_json"),
    "lone surrogate": (json.dumps({**GOOD, "merchant": "\ud800"}).encode(), "not_json"),
    "byte order mark": (b"\xef\xbb\xbf" + event(), "not_json"),
    "missing amount": (event(amount=...), "missing_field:amount"),
    "null amount": (event(amount=None), "missing_field:amount"),
    "string amount": (event(amount="125000"), "bad_type:amount"),
    "decimal amount": (event(amount=12.0), "bad_type:amount"),
    "exponent amount": (event(amount=1e3), "bad_type:amount"),
    "boolean amount": (event(amount=True), "bad_type:amount"),
    "amount beyond int64": (event(amount=2**63), "bad_type:amount"),
    "numeric rut": (event(rut=123456785), "bad_type:rut"),
    "wrong check digit": (event(rut="12345678-4"), "invalid_rut"),
    "empty event id": (event(event_id=""), "bad_value:event_id"),
    "upper-case channel": (event(channel="POS"), "bad_value:channel"),
    "region name": (event(region="Santiago"), "bad_value:region"),
    "no time zone": (event(event_time="2025-03-01T14:05:00"), "bad_value:event_time"),
    "space separator": (event(event_time="2025-03-01 14:05:00Z"), "bad_value:event_time"),
    "impossible day": (event(event_time="2025-02-29T10:00:00Z"), "bad_value:event_time"),
    "epoch seconds": (event(event_time=1740848700), "bad_type:event_time"),
    # Precedence: fields in contract order; for one field presence, then type, then value.
    "missing id before bad rut": (event(event_id=..., rut="x"), "missing_field:event_id"),
    "bad rut before missing amount": (event(rut="x", amount=...), "invalid_rut"),
    "type before value": (event(channel=7, region="??"), "bad_type:channel"),
    "channel before region": (event(channel="card", region="??"), "bad_value:channel"),
}


@pytest.fixture(scope="module")
def parsed(spark: Any) -> dict[str, Any]:
    names = list(CASES)
    rows = source_rows([(f"key-{i}", CASES[name][0]) for i, name in enumerate(names)], shards=1)
    frame = spark.createDataFrame(rows, SOURCE_SCHEMA)
    by_sequence = {row["sequenceNumber"]: row for row in parse_events(frame).collect()}
    return {name: by_sequence[row[4]] for name, row in zip(names, rows, strict=True)}


@pytest.mark.parametrize("case", list(CASES))
def test_reason(parsed: dict[str, Any], case: str) -> None:
    assert parsed[case]["reason"] == CASES[case][1]


def test_parsed_values_and_metadata(parsed: dict[str, Any]) -> None:
    row = parsed["valid"]
    assert row["record_id"] == f"{row['shardId']}:{row['sequenceNumber']}"
    assert (row["event_id"], row["rut"], row["amount"]) == ("e-1", "12345678-5", 125_000)
    assert (row["merchant"], row["channel"], row["region"]) == ("Café Ñuñoa", "pos", "CL-RM")
    assert row["event_time"].astimezone(UTC) == datetime(2025, 3, 1, 17, 5, 0, 250000, UTC)
    assert row["data"] == CASES["valid"][0]
    assert parsed["valid, k check digit lower-case"]["rut"] == "10000013-K"
    assert parsed["valid, max amount"]["amount"] == 2**63 - 1
