"""The benchmarks' input: a synthetic registry, events of which about 20% match, preloaded.

The events come from :func:`streamenrich.producer.generate_events` (every RUT spelling, 10%
malformed records); the share of unknown RUTs is calibrated so that the shipped rules match
about ``target_matched_share`` of all records. What each record should become is decided by
the plain-Python oracle of the test suite (``tests/enrich/oracle.py``), which the Spark
transform is held to exactly: the raw-copy baseline uses it to know which records to copy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamenrich.enrich import RuleSet
from streamenrich.producer import generate_events
from streamenrich.publish import PublishReport, publish_events
from streamenrich.reference.contract import REGISTRY_COLUMNS
from streamenrich.reference.generate import generate_registry, write_registry
from tests.enrich.oracle import expect

ROOT = Path(__file__).resolve().parents[1]
RULES_PATH = ROOT / "reference_data" / "rules.yaml"
MALFORMED_SHARE = 0.1
REGISTRY_SEED = 7
EVENTS_SEED = 11
# Rules use the session time zone; build_spark sets UTC.
RULES_TIME_ZONE = "UTC"
# Events draw their known people from at most this many RUTs of the registry: enough for a
# realistic spread, without holding millions of Python strings for a 5M-row registry.
KNOWN_RUT_SAMPLE = 200_000

Record = tuple[str, bytes]
RegistryRows = dict[str, tuple[Any, ...]]


def rule_names() -> list[str]:
    return [rule.name for rule in RuleSet.from_file(RULES_PATH).rules]


def registry_rows(table: pa.Table) -> RegistryRows:
    """Registry rows keyed by canonical RUT, as the oracle (and the naive baseline) want them."""
    columns = [table.column(name).to_pylist() for name in REGISTRY_COLUMNS]
    return {row[0]: row for row in zip(*columns, strict=True)}


def known_ruts(table: pa.Table, limit: int = KNOWN_RUT_SAMPLE) -> list[str]:
    """Up to ``limit`` RUTs spread evenly over the registry."""
    column = table.column("rut")
    step = max(1, len(column) // limit)
    return [str(rut) for rut in column.to_pylist()[::step][:limit]]


def calibrate_unknown_share(target_matched_share: float, seed: int = 3) -> float:
    """The ``unknown_share`` of ``generate_events`` for which about ``target`` of the records
    match: the rules match a fixed share of the known, well-formed records (measured here on a
    10,000-person registry from the same generator)."""
    table = generate_registry(10_000, seed)
    rows = registry_rows(table)
    sample = generate_events(10_000, list(rows), seed=seed, unknown_share=0.0)
    names = rule_names()
    buckets = Counter(expect(data, rows, names, RULES_TIME_ZONE).bucket for _, data in sample)
    known = buckets["matched"] + buckets["unmatched"]
    matched_given_known = buckets["matched"] / known
    share = 1.0 - target_matched_share / ((1.0 - MALFORMED_SHARE) * matched_given_known)
    return min(max(share, 0.0), 1.0)


@dataclass(frozen=True)
class Workload:
    registry_path: Path
    registry_rows: int
    events: list[Record]
    unknown_share: float

    @property
    def event_count(self) -> int:
        return len(self.events)


def build_workload(
    folder: Path,
    registry_rows_count: int,
    events: int,
    target_matched_share: float,
    *,
    registry_format: str = "parquet",
    seed: int = EVENTS_SEED,
) -> tuple[Workload, pa.Table]:
    """Writes the registry under ``folder`` and draws the events; returns both."""
    table = generate_registry(registry_rows_count, REGISTRY_SEED)
    path = write_registry(table, folder / f"registry-{registry_rows_count}.{registry_format}")
    unknown_share = calibrate_unknown_share(target_matched_share)
    records = generate_events(
        events,
        known_ruts(table),
        seed=seed,
        unknown_share=unknown_share,
        malformed_share=MALFORMED_SHARE,
    )
    return Workload(path, registry_rows_count, records, unknown_share), table


def expected_buckets(events: Sequence[Record], rows: RegistryRows) -> list[str]:
    """The bucket of each record, per the oracle (matched, unmatched, unknown, dead_letter)."""
    names = rule_names()
    return [expect(data, rows, names, RULES_TIME_ZONE).bucket for _, data in events]


def preload(client: Any, stream: str, events: Sequence[Record]) -> PublishReport:
    """Put every event (PutRecords, 500 a call) before a run starts."""
    return publish_events(client, stream, events)
