"""The registry generator and load_registry: determinism, the contract, and no silent drops."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamenrich.reference import RegistryFileError, load_registry
from streamenrich.reference.contract import (
    CREDIT_LIMIT_MAX,
    CREDIT_LIMIT_MIN,
    REGIONS,
    REGISTRY_COLUMNS,
    RISK_LEVELS,
    SEGMENTS,
)
from streamenrich.reference.generate import (
    SAMPLE_ROWS,
    SAMPLE_SEED,
    check_digits,
    generate_registry,
    generate_registry_file,
)
from streamenrich.reference.registry import mask_value
from streamenrich.reference.rut import check_digit, normalize_rut
from tests.reference.conftest import GOOD_ROWS, HEADER, SAMPLE_CSV, WriteRegistry

# --- generation -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    tmp_path: Path, suffix: str
) -> None:
    first = generate_registry_file(500, 42, tmp_path / f"a.{suffix}").read_bytes()
    again = generate_registry_file(500, 42, tmp_path / f"b.{suffix}").read_bytes()
    other = generate_registry_file(500, 43, tmp_path / f"c.{suffix}").read_bytes()
    assert first == again
    assert first != other


def test_committed_sample_is_the_generator_output(tmp_path: Path) -> None:
    regenerated = generate_registry_file(SAMPLE_ROWS, SAMPLE_SEED, tmp_path / "persons.csv")
    assert regenerated.read_bytes() == SAMPLE_CSV.read_bytes()


def test_sample_follows_the_contract(sample_rows: list[dict[str, str]]) -> None:
    assert SAMPLE_CSV.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert len(sample_rows) == 1000
    ruts = [row["rut"] for row in sample_rows]
    assert all(normalize_rut(rut) == rut for rut in ruts)  # valid and canonical
    assert len(set(ruts)) == 1000
    assert set(Counter(row["segment"] for row in sample_rows)) == set(SEGMENTS)
    assert set(Counter(row["risk_level"] for row in sample_rows)) == set(RISK_LEVELS)
    assert {row["region"] for row in sample_rows} <= set(REGIONS)
    assert Counter(row["region"] for row in sample_rows).most_common(1)[0][0] == "CL-RM"
    watchlist = Counter(row["watchlist"] for row in sample_rows)
    assert set(watchlist) == {"true", "false"}
    assert 1 <= watchlist["true"] <= 20  # "a few"
    limits = [int(row["credit_limit"]) for row in sample_rows]
    assert all(CREDIT_LIMIT_MIN <= limit <= CREDIT_LIMIT_MAX for limit in limits)
    assert all(3 <= len(row["full_name"].split()) <= 6 for row in sample_rows)


def test_generated_ruts_are_unique_valid_and_canonical() -> None:
    table = generate_registry(50_000, seed=5)
    ruts = table["rut"].to_pylist()
    assert len(set(ruts)) == 50_000
    assert all(normalize_rut(rut) == rut for rut in ruts)
    assert table.column_names == list(REGISTRY_COLUMNS)
    assert table.schema.field("watchlist").type == pa.bool_()
    assert table.schema.field("credit_limit").type == pa.int64()


def test_vectorised_check_digits_match_the_rut_module() -> None:
    bodies = np.array([1, 9, 1_000_000, 10_000_013, 12_345_678, 7_654_321, 99_999_999])
    bodies = np.concatenate([bodies, np.arange(3_000_000, 3_020_000)]).astype(np.int64)
    assert check_digits(bodies).tolist() == [check_digit(int(body)) for body in bodies]


def test_generate_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows must be between 0 and 24,000,000, got -1"):
        generate_registry(-1, seed=1)
    with pytest.raises(RegistryFileError, match=r"unknown suffix '\.json'"):
        generate_registry_file(10, 1, tmp_path / "registry.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_million_rows_in_well_under_a_minute(tmp_path: Path) -> None:
    started = time.perf_counter()
    path = generate_registry_file(1_000_000, 11, tmp_path / "big.parquet")
    elapsed = time.perf_counter() - started
    table = pq.read_table(path)
    assert table.num_rows == 1_000_000
    assert pa.compute.count_distinct(table["rut"]).as_py() == 1_000_000
    assert elapsed < 30, f"{elapsed:.1f} s"


# --- load_registry ----------------------------------------------------------------------


def _as_rows(frame: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in frame.collect())


def test_load_returns_exactly_the_rows_of_the_file(
    spark: Any, sample_rows: list[dict[str, str]]
) -> None:
    registry = load_registry(spark, SAMPLE_CSV)
    assert registry.columns == list(REGISTRY_COLUMNS)
    assert [f.dataType.simpleString() for f in registry.schema.fields] == [
        "string", "string", "string", "string", "string", "boolean", "bigint",
    ]  # fmt: skip
    expected = sorted(
        (
            row["rut"],
            row["full_name"],
            row["segment"],
            row["region"],
            row["risk_level"],
            row["watchlist"] == "true",
            int(row["credit_limit"]),
        )
        for row in sample_rows
    )
    assert _as_rows(registry) == expected


def test_load_parquet_gives_the_same_rows_as_csv(spark: Any, tmp_path: Path) -> None:
    csv_path = generate_registry_file(300, 9, tmp_path / "r.csv")
    parquet_path = generate_registry_file(300, 9, tmp_path / "r.parquet")
    from_csv = _as_rows(load_registry(spark, csv_path))
    assert len(from_csv) == 300
    assert _as_rows(load_registry(spark, parquet_path)) == from_csv


def test_load_canonicalises_rut_spellings_and_changes_nothing_else(
    spark: Any, write_registry: WriteRegistry
) -> None:
    path = write_registry(
        [
            "12.345.678-5,Ana María Soto Rojas,retail,CL-RM,low,false,1500000",
            "76543216,Benjamín Muñoz Díaz,premium,CL-VS,medium,TRUE,8000000",
            '" 10.000.013-k",Catalina Pérez Fuentes,corporate,CL-BI,high,false,+150000000',
        ]
    )
    assert _as_rows(load_registry(spark, path)) == [
        ("10000013-K", "Catalina Pérez Fuentes", "corporate", "CL-BI", "high", False, 150000000),
        ("12345678-5", "Ana María Soto Rojas", "retail", "CL-RM", "low", False, 1500000),
        ("7654321-6", "Benjamín Muñoz Díaz", "premium", "CL-VS", "medium", True, 8000000),
    ]


def test_load_raises_on_invalid_ruts(spark: Any, write_registry: WriteRegistry) -> None:
    rows = [
        *GOOD_ROWS,
        "12345678-9,Ana Rojas,retail,CL-RM,low,false,1",
        ",Sin Rut,sme,CL-RM,low,false,1",
    ]
    path = write_registry(rows)
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    message = str(caught.value)
    assert message.startswith(f"registry file {path}: 2 rows have a RUT that is not valid, e.g. ")
    assert set(message.split("e.g. ")[1].split(", ")) == {"******78-9", "<null>"}
    assert "12345678-9" not in message


def test_load_raises_on_duplicate_ruts_in_any_spelling(
    spark: Any, write_registry: WriteRegistry
) -> None:
    path = write_registry([*GOOD_ROWS, "12.345.678-5,Otra Persona,retail,CL-RM,low,false,1"])
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert str(caught.value) == (
        f"registry file {path}: 1 row has the RUT of an earlier row (RUTs must be unique), "
        "e.g. *****678-5 (2x)"
    )


def test_load_raises_on_malformed_lines_with_count_and_masked_examples(
    spark: Any, write_registry: WriteRegistry
) -> None:
    path = write_registry(
        [
            *GOOD_ROWS,
            "11111111-1,Short Row,retail,CL-RM,low,false",  # 6 fields
            "22222222-2,Bad Limit,retail,CL-RM,low,false,lots",  # not an integer
        ]
    )
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    message = str(caught.value)
    assert message.startswith(f"registry file {path}: 2 malformed rows (a wrong number of fields")
    assert message.endswith("e.g. the rows of RUT *****111-1, *****222-2")


def test_load_checks_every_column_even_when_only_rut_is_used_later(
    spark: Any, write_registry: WriteRegistry
) -> None:
    # Spark parses only the columns a query needs: a bad watchlist must still fail the load.
    path = write_registry([*GOOD_ROWS, "11111111-1,Ana Rojas,retail,CL-RM,low,maybe,1"])
    with pytest.raises(RegistryFileError, match="1 malformed row "):
        load_registry(spark, path)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "rut,full_name,segment,region,risk_level,watchlist",
            "columns are not the registry's: missing ['credit_limit'], unexpected []",
        ),
        (
            HEADER + ",email",
            "columns are not the registry's: missing [], unexpected ['email']",
        ),
        (
            "full_name,rut,segment,region,risk_level,watchlist,credit_limit",
            "columns are in the wrong order: ['full_name', 'rut', 'segment', 'region', "
            "'risk_level', 'watchlist', 'credit_limit'], expected ['rut', 'full_name', "
            "'segment', 'region', 'risk_level', 'watchlist', 'credit_limit']",
        ),
        (
            HEADER.replace(",", ";"),
            "has a single column 'rut;full_name;segment;region;risk_level;watchlist;"
            "credit_limit': it looks delimited by ';', but registry files are comma-separated",
        ),
    ],
    ids=["missing", "extra", "order", "semicolon"],
)
def test_load_refuses_other_columns(
    spark: Any, write_registry: WriteRegistry, header: str, problem: str
) -> None:
    path = write_registry(GOOD_ROWS, header=header)
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert str(caught.value) == f"registry file {path}: {problem}"


def test_load_refuses_an_empty_file(spark: Any, write_registry: WriteRegistry) -> None:
    path = write_registry(b"")
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert caught.value.problem == "is empty (0 bytes): a registry file has at least a header"


def test_load_refuses_latin1_anywhere_in_the_file(
    spark: Any, write_registry: WriteRegistry
) -> None:
    # Past the first 64 KiB, so that Spark's own check (U+FFFD counting) is what catches it.
    latin1_row = "3000001-3,Rosa Mu\xf1oz,retail,CL-RM,low,false,1\n".encode("latin-1")
    text = SAMPLE_CSV.read_bytes() + latin1_row
    assert len(text) > 64 * 1024
    path = write_registry(text)
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert caught.value.problem == (
        "1 row has bytes that are not valid UTF-8 (Spark could not decode them); "
        "re-save the file as UTF-8"
    )


def test_load_refuses_a_png(spark: Any, write_registry: WriteRegistry) -> None:
    path = write_registry(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(RegistryFileError, match=r"is not a CSV text file: it is a PNG image$"):
        load_registry(spark, path)


def test_load_refuses_a_missing_file(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(RegistryFileError, match=r"nothing\.csv: does not exist$"):
        load_registry(spark, tmp_path / "nothing.csv")


def test_load_refuses_a_truncated_parquet_file(spark: Any, tmp_path: Path) -> None:
    whole = generate_registry_file(100, 1, tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert caught.value.problem.startswith("is not a readable Parquet file: ")
    assert "FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER" in caught.value.problem


def test_load_refuses_parquet_with_wrong_types(spark: Any, tmp_path: Path) -> None:
    table = generate_registry(10, seed=1)
    index = table.column_names.index("credit_limit")
    table = table.set_column(index, "credit_limit", table["credit_limit"].cast(pa.string()))
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    with pytest.raises(RegistryFileError) as caught:
        load_registry(spark, path)
    assert caught.value.problem == (
        "has columns of the wrong type: credit_limit is string, expected bigint"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("12345678-5", "*****678-5"),
        ("12.345.678-5", "*****678-5"),
        ("12345678-9", "******78-9"),
        ("abc", "**c"),
        ("", "''"),
        (None, "<null>"),
    ],
)
def test_mask_value(value: str | None, shown: str) -> None:
    assert mask_value(value) == shown
