"""Fixtures of the enrichment tests: a small registry, Kinesis-shaped input rows, the rules."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streamenrich.enrich import RuleSet
from streamenrich.kinesis.source import SOURCE_SCHEMA
from streamenrich.reference.contract import REGIONS, REGISTRY_SCHEMA, RISK_LEVELS, SEGMENTS
from streamenrich.reference.rut import format_rut

RULES_FILE = Path(__file__).resolve().parents[2] / "reference_data" / "rules.yaml"
STREAM = "events-in"
ARRIVAL_START = datetime(2025, 2, 1, tzinfo=UTC)
# Columns of REGISTRY_SCHEMA, in order.
Person = tuple[str, str, str, str, str, bool, int]
SourceRow = tuple[bytes | None, str, str, str, str, datetime]


def make_people(count: int, seed: int = 11) -> list[Person]:
    """``count`` registry rows with canonical RUTs; at least a tenth have a ``K`` check digit."""
    rng = random.Random(seed)
    bodies = rng.sample(range(1_000_000, 30_000_000), count * 3)
    with_k = [b for b in bodies if format_rut(b).endswith("K")][: count // 10]
    others = [b for b in bodies if b not in set(with_k)][: count - len(with_k)]
    people: list[Person] = []
    for i, body in enumerate(with_k + others):
        people.append(
            (
                format_rut(body),
                f"Persona {i} Muñoz",
                rng.choice(SEGMENTS),
                rng.choice(REGIONS),
                rng.choice(RISK_LEVELS),
                rng.random() < 0.05,
                rng.choice([0, 100_000, 500_000, 2_000_000, 10_000_000, 1_000_000_000]),
            )
        )
    return people


def source_rows(records: Sequence[tuple[str, bytes | None]], shards: int = 4) -> list[SourceRow]:
    """Kinesis source rows for ``(partition_key, data)`` records, spread over ``shards``."""
    return [
        (
            data,
            STREAM,
            f"shardId-{i % shards:012d}",
            key,
            str(49_600_000_000_000_000_000 + i * 7),
            ARRIVAL_START + timedelta(milliseconds=i),
        )
        for i, (key, data) in enumerate(records)
    ]


@pytest.fixture(scope="session")
def people() -> list[Person]:
    return make_people(400)


@pytest.fixture(scope="session")
def registry(spark: Any, people: list[Person]) -> Any:
    return spark.createDataFrame(people, REGISTRY_SCHEMA)


@pytest.fixture(scope="session")
def shipped_rules() -> RuleSet:
    return RuleSet.from_file(RULES_FILE)


@pytest.fixture
def source_frame(spark: Any) -> Callable[[Sequence[SourceRow]], Any]:
    """``source_frame(rows)``: a DataFrame with the Kinesis source schema."""

    def make(rows: Sequence[SourceRow]) -> Any:
        return spark.createDataFrame(list(rows), SOURCE_SCHEMA)

    return make
