"""Baseline 2, what a first tutorial would write: one GetRecords loop per shard, a dict.

Shards are read one after another; each record is parsed with ``json.loads``, its RUT
normalised and looked up in a Python dict of the registry, the shipped rules evaluated as
Python predicates, and each match written with its own ``PutRecord`` call. It does less
checking than the pipeline (no dead-letter stream, no duplicate-key or timestamp-format
checks), which only flatters it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streamenrich.kinesis.client import list_shards
from streamenrich.reference.contract import REGISTRY_COLUMNS
from streamenrich.reference.rut import normalize_rut

Event = dict[str, Any]
Person = dict[str, Any]

# reference_data/rules.yaml, restated in Python (hour() in UTC, the session time zone).
RULES: dict[str, Callable[[Event, Person], bool]] = {
    "near_credit_limit": lambda e, p: e["amount"] > p["credit_limit"] * 0.8,
    "watchlisted_person": lambda e, p: bool(p["watchlist"]),
    "high_risk_out_of_region": lambda e, p: (
        p["risk_level"] == "high" and e["region"] != p["region"]
    ),
    "atm_small_hours": lambda e, p: (
        e["channel"] == "atm" and datetime.fromisoformat(e["event_time"]).astimezone(UTC).hour < 5
    ),
    "large_transfer_retail": lambda e, p: (
        e["channel"] == "transfer"
        and e["amount"] >= 10_000_000
        and p["segment"] in ("retail", "sme")
    ),
}


@dataclass(frozen=True)
class NaiveResult:
    records_read: int
    records_written: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records_read / self.seconds if self.seconds > 0 else 0.0


def people_by_rut(rows: dict[str, tuple[Any, ...]]) -> dict[str, Person]:
    return {rut: dict(zip(REGISTRY_COLUMNS, row, strict=True)) for rut, row in rows.items()}


def _enrich(data: bytes, people: dict[str, Person]) -> tuple[str, dict[str, Any]] | None:
    try:
        event = json.loads(data)
        rut = normalize_rut(event["rut"])
        person = people.get(rut) if rut else None
        if person is None:
            return None
        fired = [name for name, rule in RULES.items() if rule(event, person)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a malformed record: a tutorial skips it
    if not fired:
        return None
    return person["rut"], {**event, "person": person, "rules": fired}


def enrich_stream(client: Any, source: str, target: str, people: dict[str, Person]) -> NaiveResult:
    """Read every shard of ``source`` in turn; write each match to ``target`` on its own."""
    started = time.perf_counter()
    read = written = 0
    for shard in list_shards(client, source):
        iterator = client.get_shard_iterator(
            StreamName=source, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator)
            records = response["Records"]
            for record in records:
                read += 1
                match = _enrich(record["Data"], people)
                if match is not None:
                    key, output = match
                    client.put_record(StreamName=target, Data=json.dumps(output), PartitionKey=key)
                    written += 1
            if not records and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return NaiveResult(read, written, time.perf_counter() - started)
