"""A deterministic synthetic registry of any size: same rows, seed and versions, same bytes.

Names come from Faker's ``es_CL`` person data (first names and surnames with their
frequencies), read once as pools; every column is then drawn for all rows at once with a
seeded NumPy generator, so a million rows take seconds rather than the minutes Faker per row
would. RUT bodies are sampled without replacement, so RUTs are unique by construction.

>>> table = generate_registry(rows=3, seed=1)
>>> table.column_names == list(REGISTRY_COLUMNS)
True

The committed sample is ``reference_data/persons.csv``, made by
``streamenrich reference generate --rows 1000 --seed 1810 --out reference_data/persons.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from faker.providers.person.es_CL import Provider as ChileanNames

from streamenrich.reference.contract import (
    CREDIT_LIMIT_MAX,
    CREDIT_LIMIT_MIN,
    REGIONS,
    REGISTRY_COLUMNS,
    RISK_LEVELS,
    SEGMENTS,
)
from streamenrich.reference.registry import RegistryFileError, registry_format

SAMPLE_SEED = 1810
SAMPLE_ROWS = 1000
# RUT bodies of living people run from about 3 million (born in the 1930s) to about 27 million
# (born this decade); bodies above 50 million belong to companies.
RUT_BODY_MIN = 3_000_000
RUT_BODY_MAX = 27_000_000  # exclusive
MAX_ROWS = RUT_BODY_MAX - RUT_BODY_MIN

SEGMENT_WEIGHTS = {"retail": 62, "premium": 18, "private": 3, "sme": 12, "corporate": 5}
# Roughly the regions' shares of Chile's population (2017 census), in percent.
REGION_WEIGHTS = {
    "CL-AP": 1.3,
    "CL-TA": 1.9,
    "CL-AN": 3.4,
    "CL-AT": 1.6,
    "CL-CO": 4.3,
    "CL-VS": 10.3,
    "CL-RM": 40.5,
    "CL-LI": 5.2,
    "CL-ML": 5.9,
    "CL-NB": 2.7,
    "CL-BI": 8.9,
    "CL-AR": 5.4,
    "CL-LR": 2.2,
    "CL-LL": 4.7,
    "CL-AI": 0.6,
    "CL-MA": 0.9,
}
RISK_WEIGHTS = {"low": 72, "medium": 21, "high": 7}
# The chance of being on the watchlist, by risk level.
WATCHLIST_RATE = {"low": 0.002, "medium": 0.01, "high": 0.06}
# Median credit limit in CLP by segment; limits are log-normal around it, in steps of 10,000.
CREDIT_MEDIAN = {
    "retail": 1_500_000,
    "premium": 8_000_000,
    "private": 40_000_000,
    "sme": 25_000_000,
    "corporate": 150_000_000,
}
CREDIT_SIGMA = 0.8
CREDIT_STEP = 10_000
# Most Chileans carry two given names; a registry records them when known.
TWO_GIVEN_NAMES_RATE = 0.75
# Check digit = "0123456789K"[sum(digit * weight) % 11] over the zero-padded 8-digit body,
# left to right: the same arithmetic as ``rut.canonical_rut_column``.
_CHECK_WEIGHTS = np.array([8, 9, 4, 5, 6, 7, 8, 9], dtype=np.int64)

REGISTRY_ARROW_SCHEMA = pa.schema(
    [
        ("rut", pa.string()),
        ("full_name", pa.string()),
        ("segment", pa.string()),
        ("region", pa.string()),
        ("risk_level", pa.string()),
        ("watchlist", pa.bool_()),
        ("credit_limit", pa.int64()),
    ]
)
assert tuple(REGISTRY_ARROW_SCHEMA.names) == REGISTRY_COLUMNS


def generate_registry(rows: int, seed: int) -> pa.Table:
    """``rows`` people with unique valid RUTs, drawn deterministically from ``seed``."""
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between 0 and {MAX_ROWS:,}, got {rows:,}")
    rng = np.random.default_rng(seed)
    bodies = rng.choice(MAX_ROWS, size=rows, replace=False).astype(np.int64) + RUT_BODY_MIN
    segment = _draw(rng, SEGMENTS, SEGMENT_WEIGHTS, rows)
    risk = _draw(rng, RISK_LEVELS, RISK_WEIGHTS, rows)
    watch_rate = np.array([WATCHLIST_RATE[level] for level in RISK_LEVELS])[risk]
    medians = np.array([CREDIT_MEDIAN[name] for name in SEGMENTS], dtype=np.float64)[segment]
    credit = medians * rng.lognormal(0.0, CREDIT_SIGMA, size=rows)
    credit = np.where(risk == RISK_LEVELS.index("high"), credit / 2, credit)
    credit_steps = np.rint(credit / CREDIT_STEP).astype(np.int64) * CREDIT_STEP
    columns: dict[str, Any] = {
        "rut": _rut_strings(bodies),
        "full_name": _full_names(rng, rows),
        "segment": pa.array(SEGMENTS).take(pa.array(segment)),
        "region": pa.array(REGIONS).take(pa.array(_draw(rng, REGIONS, REGION_WEIGHTS, rows))),
        "risk_level": pa.array(RISK_LEVELS).take(pa.array(risk)),
        "watchlist": pa.array(rng.random(rows) < watch_rate, type=pa.bool_()),
        "credit_limit": pa.array(np.clip(credit_steps, CREDIT_LIMIT_MIN, CREDIT_LIMIT_MAX)),
    }
    return pa.table(columns, schema=REGISTRY_ARROW_SCHEMA)


def write_registry(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """Writes ``table`` as CSV or Parquet by the suffix of ``out``, atomically (temp + rename).

    CSV: UTF-8, a header, ``,`` delimiters, ``\\n`` line ends, no quotes (a value that would
    need them is an error), booleans as ``true``/``false``. Parquet: one Snappy file.
    """
    path = Path(out)
    file_format = registry_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if file_format == "csv":
            options = pa_csv.WriteOptions(
                include_header=True, quoting_style="none", quoting_header="none"
            )
            pa_csv.write_csv(table, partial, write_options=options)
        else:
            pq.write_table(table, partial, compression="snappy")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def generate_registry_file(rows: int, seed: int, out: str | os.PathLike[str]) -> Path:
    """Generates ``rows`` people from ``seed`` and writes them to ``out`` (CSV or Parquet)."""
    registry_format(Path(out))  # refuse an unknown suffix before any work
    try:
        return write_registry(generate_registry(rows, seed), out)
    except OSError as exc:
        raise RegistryFileError(out, f"cannot be written: {exc.strerror or exc}") from exc


def check_digits(bodies: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[Any]]:
    """Vectorised RUT check digits ('0'-'9' or 'K'); equal to ``rut.check_digit`` per body."""
    powers = 10 ** np.arange(7, -1, -1, dtype=np.int64)
    digits = (bodies[:, None] // powers) % 10
    symbols: np.ndarray[Any, np.dtype[Any]] = np.array(list("0123456789K"))
    result: np.ndarray[Any, np.dtype[Any]] = symbols[(digits @ _CHECK_WEIGHTS) % 11]
    return result


def _rut_strings(bodies: np.ndarray[Any, np.dtype[np.int64]]) -> pa.Array:
    body_text = pc.cast(pa.array(bodies), pa.string())
    return pc.binary_join_element_wise(body_text, pa.array(check_digits(bodies)), "-")


def _full_names(rng: np.random.Generator, rows: int) -> pa.Array:
    """``<given> [<second given>] <paternal surname> <maternal surname>``, sex at 50/50."""
    female = rng.random(rows) < 0.5
    first = _given_names(rng, rows, female, None)
    second = _given_names(rng, rows, female, first)
    second = pc.if_else(pa.array(rng.random(rows) < TWO_GIVEN_NAMES_RATE), second, None)
    paternal, maternal = (_pool_draw(rng, ChileanNames.last_names, rows) for _ in range(2))
    return pc.binary_join_element_wise(first, second, paternal, maternal, " ", null_handling="skip")


def _given_names(
    rng: np.random.Generator, rows: int, female: np.ndarray[Any, Any], unlike: pa.Array | None
) -> pa.Array:
    women = _pool_draw(rng, ChileanNames.first_names_female, rows, unlike)
    men = _pool_draw(rng, ChileanNames.first_names_male, rows, unlike)
    return pc.if_else(pa.array(female), women, men)


def _pool_draw(
    rng: np.random.Generator, pool: dict[str, float], rows: int, unlike: pa.Array | None = None
) -> pa.Array:
    """Names drawn by frequency; where ``unlike`` is given, never equal to it row by row."""
    names = pa.array(list(pool))
    weights = np.fromiter(pool.values(), dtype=np.float64)
    picks = rng.choice(len(names), size=rows, p=weights / weights.sum())
    drawn = names.take(pa.array(picks))
    if unlike is None:
        return drawn
    clash = np.asarray(pc.fill_null(pc.equal(drawn, unlike), False))
    while clash.any():  # redraw only the clashing rows; each round is deterministic
        picks[clash] = rng.choice(len(names), size=int(clash.sum()), p=weights / weights.sum())
        drawn = names.take(pa.array(picks))
        clash = np.asarray(pc.fill_null(pc.equal(drawn, unlike), False))
    return drawn


def _draw(
    rng: np.random.Generator, names: tuple[str, ...], weights: Mapping[str, float], rows: int
) -> np.ndarray[Any, Any]:
    """Indices into ``names`` (a tuple of the contract), drawn by ``weights[name]``."""
    values = np.array([weights[name] for name in names], dtype=np.float64)
    return rng.choice(len(values), size=rows, p=values / values.sum())
