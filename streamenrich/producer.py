"""Synthetic input events: deterministic, covering every RUT spelling and every malformed kind.

>>> records = generate_events(1000, ["12345678-5"], seed=7)
>>> partition_key, data = records[0]
>>> len(records), type(data)
(1000, <class 'bytes'>)

Each record is ``(partition_key, data)``: the partition key is the RUT as sent (or
``record-<i>`` when the record has no usable RUT), ``data`` the bytes to publish. The same
arguments always give the same records. Pure: no AWS, no Spark.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from streamenrich.enrich.events import CHANNELS, EVENT_COLUMNS
from streamenrich.reference.contract import REGIONS
from streamenrich.reference.rut import format_rut

RUT_SPELLINGS: tuple[str, ...] = ("canonical", "dotted", "compact", "lowercase", "padded")
MALFORMED_KINDS: tuple[str, ...] = (
    "not_utf8",
    "truncated_json",
    "not_json_text",
    "not_an_object",
    "trailing_content",
    "duplicate_key",
    "nan_amount",
    "lone_surrogate",
    "missing_field",
    "null_field",
    "bad_type",
    "invalid_rut",
    "bad_channel",
    "bad_region",
    "bad_event_time",
    "empty_event_id",
)
MERCHANTS: tuple[str, ...] = (
    "Supermercado Líder",
    "Panadería Ñuñoa",
    "Farmacia Cruz Verde",
    "Café ☕ Colombia",
    "北京烤鸭 Santiago",
    "🛒 Mercado Central",
    'Joe\'s "Deli" \\ Bar',
    "Copec",
    "Falabella",
    "x}] tricky",
    "",
)
_OFFSETS = ("Z", "+00:00", "-03:00", "-04:00", "+05:30", "+14:00")
_START = datetime(2025, 1, 1, tzinfo=UTC)
_BAD_TYPES: dict[str, tuple[Any, ...]] = {
    "event_id": (123, True, ["e-1"]),
    "rut": (123456785, 12345678.5, {"body": 12345678}),
    "amount": ("1000", 12.5, 12.0, 1e3, True, 2**64, -(2**63) - 1, [1]),
    "merchant": ({"name": "x"}, False, 7),
    "channel": (1, ["pos"]),
    "region": (["CL-RM"], 13),
    "event_time": (1735689600, 1.5),
}
_INVALID_RUTS = (
    "12345678-4",
    "abc",
    "",
    "   ",
    "12.345678-5",
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18-5",
    "0-0",
    "1234-5",
)
_BAD_VALUES: dict[str, tuple[str, ...]] = {
    "channel": ("POS", "card", "", " atm", "atm "),
    "region": ("RM", "cl-rm", "CL-XX", "", "Santiago"),
    "event_time": (
        "2025-02-30T10:00:00Z",
        "2025-01-01 10:00:00Z",
        "01/02/2025 10:00",
        "2025-01-01T10:00:00",
        "2025-01-01T25:00:00Z",
        "1899-12-31T23:59:59Z",
        "2025-01-01T10:00:00+15:00",
        "",
    ),
}


def spell_rut(canonical: str, spelling: str) -> str:
    """One accepted spelling of a canonical RUT: ``spell_rut("12345678-5", "dotted")``."""
    body, check = canonical.split("-")
    if spelling == "canonical":
        return canonical
    if spelling == "dotted":
        return f"{int(body):,}".replace(",", ".") + f"-{check}"
    if spelling == "compact":
        return body + check
    if spelling == "lowercase":
        return f"{body}-{check.lower()}"
    if spelling == "padded":
        return f" \t{spell_rut(canonical, 'dotted').lower()}  \n"
    raise ValueError(f"unknown spelling {spelling!r}; expected one of {RUT_SPELLINGS}")


class _Generator:
    def __init__(self, known_ruts: Sequence[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.known = list(known_ruts)
        self.known_set = set(known_ruts)
        self.event_ids: list[str] = []

    def unknown_rut(self) -> str:
        while True:
            rut = format_rut(self.rng.randint(1_000_000, 99_999_999))
            if rut not in self.known_set:
                return rut

    def amount(self) -> int:
        roll = self.rng.random()
        if roll < 0.4:
            return self.rng.randint(100, 50_000)
        if roll < 0.8:
            return self.rng.randint(50_000, 5_000_000)
        if roll < 0.95:
            return self.rng.randint(5_000_000, 500_000_000)
        if roll < 0.98:
            return self.rng.choice([2**63 - 1, -(2**63), self.rng.randint(10**12, 2**63 - 1)])
        return self.rng.choice([0, -self.rng.randint(1, 100_000)])

    def event_time(self) -> str:
        moment = _START + timedelta(seconds=self.rng.randint(0, 30 * 86400))
        moment += timedelta(microseconds=self.rng.choice([0, 0, 123000, 456789]))
        offset = self.rng.choice(_OFFSETS)
        hours, minutes = (0, 0) if offset == "Z" else (int(offset[1:3]), int(offset[4:]))
        sign = -1 if offset.startswith("-") else 1
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        text = moment.astimezone(zone).isoformat(timespec=self.rng.choice(["seconds", "auto"]))
        return text.replace("+00:00", "Z") if offset == "Z" else text

    def event(self, rut: str) -> dict[str, Any]:
        if self.event_ids and self.rng.random() < 0.01:
            event_id = self.rng.choice(self.event_ids)  # a duplicate: not an error
        else:
            event_id = f"evt-{self.rng.getrandbits(48):012x}"
            self.event_ids.append(event_id)
        return {
            "event_id": event_id,
            "rut": rut,
            "amount": self.amount(),
            "merchant": self.rng.choice(MERCHANTS),
            "channel": self.rng.choice(CHANNELS),
            "region": self.rng.choice(REGIONS),
            "event_time": self.event_time(),
        }

    def encode(self, event: dict[str, Any]) -> str:
        items = list(event.items())
        if self.rng.random() < 0.2:
            self.rng.shuffle(items)
        compact = self.rng.random() < 0.5
        text = json.dumps(
            dict(items),
            ensure_ascii=self.rng.random() < 0.3,
            separators=(",", ":") if compact else None,
        )
        return text + "\n" if self.rng.random() < 0.05 else text

    def malformed(self, kind: str, event: dict[str, Any]) -> bytes:
        """The bytes of one malformed record of ``kind`` (one of :data:`MALFORMED_KINDS`)."""
        rng = self.rng
        field = rng.choice(EVENT_COLUMNS)
        text = self.encode(event).rstrip()
        match kind:
            case "not_utf8":
                return rng.choice(
                    [
                        json.dumps({**event, "merchant": "Café"}, ensure_ascii=False).encode(
                            "latin-1", "replace"
                        ),
                        text.encode()[:-1] + b"\xff}",
                        b'{"event_id": "\xc0\xaf"}',
                        "é".encode()[:1] + text.encode(),
                    ]
                )
            case "truncated_json":
                payload = text[: rng.randint(1, len(text) - 1)]
            case "not_json_text":
                payload = rng.choice(["hello", "", "event_id=1&amount=2", str(event), "{a: 1}"])
            case "not_an_object":
                payload = rng.choice([f"[{text}]", '"text"', "42", "null", "true", "[]"])
            case "trailing_content":
                payload = text + rng.choice([" x", "]", "}", text, "\n" + text, ",1", "//"])
            case "duplicate_key":
                payload = text[:-1] + ', "amount": 1}'
            case "nan_amount":
                payload = json.dumps({**event, "amount": 0}).replace('"amount": 0', '"amount": NaN')
            case "lone_surrogate":
                payload = json.dumps({**event, "merchant": "half \ud800 a pair"})
            case "missing_field":
                payload = self.encode({k: v for k, v in event.items() if k != field})
            case "null_field":
                payload = self.encode({**event, field: None})
            case "bad_type":
                payload = self.encode({**event, field: rng.choice(_BAD_TYPES[field])})
            case "invalid_rut":
                payload = self.encode({**event, "rut": rng.choice(_INVALID_RUTS)})
            case "empty_event_id":
                payload = self.encode({**event, "event_id": ""})
            case _ if kind.startswith("bad_") and kind[4:] in _BAD_VALUES:
                payload = self.encode({**event, kind[4:]: rng.choice(_BAD_VALUES[kind[4:]])})
            case _:
                raise ValueError(f"unknown malformed kind {kind!r}")
        return payload.encode("utf-8")


def generate_events(
    n: int,
    known_ruts: Sequence[str],
    seed: int = 0,
    unknown_share: float = 0.1,
    malformed_share: float = 0.1,
) -> list[tuple[str, bytes]]:
    """``n`` records: known RUTs (any spelling), unknown valid RUTs, and malformed records.

    ``known_ruts`` are canonical RUTs (those of the registry); ``unknown_share`` of the
    well-formed records use a valid RUT not among them; ``malformed_share`` of all records are
    malformed, cycling through :data:`MALFORMED_KINDS` in random order. About 1% of event ids
    repeat an earlier one.
    """
    if not 0 <= unknown_share <= 1 or not 0 <= malformed_share <= 1:
        raise ValueError("unknown_share and malformed_share must be between 0 and 1")
    gen = _Generator(known_ruts, seed)
    records: list[tuple[str, bytes]] = []
    kinds: list[str] = []
    for i in range(n):
        if not gen.known or gen.rng.random() < unknown_share:
            canonical = gen.unknown_rut()
        else:
            canonical = gen.rng.choice(gen.known)
        rut = spell_rut(canonical, gen.rng.choice(RUT_SPELLINGS))
        event = gen.event(rut)
        key = rut if rut.strip() else f"record-{i}"
        if gen.rng.random() < malformed_share:
            if not kinds:
                kinds = gen.rng.sample(MALFORMED_KINDS, len(MALFORMED_KINDS))
            records.append((key, gen.malformed(kinds.pop(), event)))
        else:
            records.append((key, gen.encode(event).encode("utf-8")))
    return records
