"""A plain-Python model of the enrichment transform, written from the contract, not the code.

It decodes and parses each record with the standard library, applies the documented
dead-letter precedence, looks the RUT up in a dict and evaluates hand-written predicates
equivalent to the shipped rules. The Spark transform must agree with it exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from streamenrich.reference.contract import REGIONS, REGISTRY_COLUMNS
from streamenrich.reference.rut import normalize_rut

FIELDS = ("event_id", "rut", "amount", "merchant", "channel", "region", "event_time")
CHANNELS = {"pos", "web", "atm", "transfer"}
_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(\.\d{1,6})?"
    r"(?P<zone>Z|[+-](?P<zh>\d{2}):(?P<zm>\d{2}))",
    re.ASCII,
)

Event = dict[str, Any]
Person = dict[str, Any]

# The shipped rules (reference_data/rules.yaml), restated as Python predicates.
RULES: dict[str, Callable[[Event, Person, ZoneInfo], bool]] = {
    "near_credit_limit": lambda e, p, tz: e["amount"] * 10 > p["credit_limit"] * 8,
    "watchlisted_person": lambda e, p, tz: p["watchlist"] is True,
    "high_risk_out_of_region": lambda e, p, tz: (
        p["risk_level"] == "high" and e["region"] != p["region"]
    ),
    "atm_small_hours": lambda e, p, tz: (
        e["channel"] == "atm" and e["event_time"].astimezone(tz).hour < 5
    ),
    "large_transfer_retail": lambda e, p, tz: (
        e["channel"] == "transfer"
        and e["amount"] >= 10_000_000
        and p["segment"] in ("retail", "sme")
    ),
}


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _Duplicate("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _all_strings_encodable(value: Any) -> bool:
    """False if any string holds a lone surrogate (valid in Python, not in JSON text)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(
            _all_strings_encodable(k) and _all_strings_encodable(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_all_strings_encodable(v) for v in value)
    return True


def parse_time(text: str) -> datetime | None:
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    if not 1900 <= int(text[:4]) <= 2999 or int(match["h"]) > 23 or int(match["m"]) > 59:
        return None
    if int(match["s"]) > 59:
        return None
    if match["zh"] is not None and (int(match["zh"]) * 60 + int(match["zm"]) > 14 * 60):
        return None
    if match["zm"] is not None and int(match["zm"]) > 59:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def classify(data: bytes | None) -> tuple[str | None, Event | None]:
    """``(reason, None)`` for a dead letter, ``(None, event)`` for a valid event."""
    if data is None:
        return "not_json", None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError:
        return "not_json", None
    if not isinstance(doc, dict) or not _all_strings_encodable(doc):
        return "not_json", None
    event: Event = {}
    for name in FIELDS:
        value: Any = doc.get(name)
        if value is None:
            return f"missing_field:{name}", None
        if name == "amount":
            if type(value) is not int or not -(2**63) <= value < 2**63:
                return "bad_type:amount", None
        elif type(value) is not str:
            return f"bad_type:{name}", None
        if name == "event_id" and value == "":
            return "bad_value:event_id", None
        if name == "rut":
            value = normalize_rut(value)
            if value is None:
                return "invalid_rut", None
        if name == "channel" and value not in CHANNELS:
            return "bad_value:channel", None
        if name == "region" and value not in REGIONS:
            return "bad_value:region", None
        if name == "event_time":
            value = parse_time(value)
            if value is None:
                return "bad_value:event_time", None
        event[name] = value
    return None, event


@dataclass(frozen=True)
class Expected:
    bucket: str
    reason: str | None = None
    event: Event | None = None
    person: Person | None = None
    rules: tuple[str, ...] = ()


def expect(
    data: bytes | None, registry: Mapping[str, Sequence[Any]], rule_names: Sequence[str], tz: str
) -> Expected:
    """The bucket and outcome of one record, given registry rows keyed by canonical RUT."""
    reason, event = classify(data)
    if event is None:
        return Expected("dead_letter", reason=reason)
    row = registry.get(event["rut"])
    if row is None:
        return Expected("unknown", event=event)
    person = dict(zip(REGISTRY_COLUMNS, row, strict=True))
    zone = ZoneInfo(tz)
    fired = tuple(name for name in rule_names if RULES[name](event, person, zone))
    return Expected("matched" if fired else "unmatched", event=event, person=person, rules=fired)


def utc_text(moment: datetime) -> str:
    """A timestamp as the output JSON writes it: RFC 3339, UTC, microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def output_record(expected: Expected, source: Sequence[Any]) -> dict[str, Any]:
    """The matched record's JSON (without ``processed_at``), from the contract."""
    assert expected.event is not None and expected.person is not None
    _, stream, shard, _, sequence, arrival = source
    return {
        **{k: expected.event[k] for k in FIELDS if k != "event_time"},
        "event_time": utc_text(expected.event["event_time"]),
        "person": expected.person,
        "rules": list(expected.rules),
        "record_id": f"{shard}:{sequence}",
        "source": {
            "stream": stream,
            "shard": shard,
            "sequence_number": sequence,
            "arrival_time": utc_text(arrival),
        },
    }
