"""validate_registry: the stored GX suite, exact outcomes for good and bad files, masking."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamenrich.reference import RegistryFileError, ValidationReport, validate_registry
from streamenrich.reference.expectations import (
    DEFAULT_SUITE_PATH,
    ExpectationSuiteError,
    ExpectColumnValuesToBeValidRut,
    build_registry_suite,
    load_registry_suite,
    suite_document,
)
from streamenrich.reference.generate import generate_registry, generate_registry_file
from tests.reference.conftest import GOOD_ROWS, HEADER, SAMPLE_CSV, WriteRegistry

VALID_RUT = "expect_column_values_to_be_valid_rut"
UNIQUE = "expect_column_values_to_be_unique"
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
COLUMNS = "expect_table_columns_to_match_ordered_list"
ROW_COUNT = "expect_table_row_count_to_be_between"


def failed(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(result.expectation_type, result.column) for result in report.failures}


# --- the suite --------------------------------------------------------------------------


def test_stored_suite_is_the_contract_and_keeps_the_custom_expectation() -> None:
    stored = json.loads(DEFAULT_SUITE_PATH.read_text(encoding="utf-8"))
    assert stored == suite_document(build_registry_suite())
    suite = load_registry_suite()
    types = [expectation.expectation_type for expectation in suite.expectations]
    assert len(types) == 16
    assert types.count(VALID_RUT) == 1
    rut_check = next(e for e in suite.expectations if e.expectation_type == VALID_RUT)
    assert isinstance(rut_check, ExpectColumnValuesToBeValidRut)
    assert rut_check.column == "rut"


def test_a_suite_with_an_unknown_expectation_is_refused(tmp_path: Path) -> None:
    document = suite_document(build_registry_suite())
    document["expectations"].append(
        {"type": "expect_column_values_to_be_frobnicated", "kwargs": {"column": "rut"}}
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ExpectationSuiteError) as caught:
        load_registry_suite(path)
    assert "GX did not load ['expect_column_values_to_be_frobnicated']" in str(caught.value)


# --- files that pass --------------------------------------------------------------------


def test_the_committed_sample_validates(docs_dir: Path) -> None:
    report = validate_registry(SAMPLE_CSV, docs_dir)
    assert report.success, report.to_markdown()
    assert report.row_count == 1000
    assert len(report.results) == 16 and not report.failures
    assert report.result_for(VALID_RUT, "rut").unexpected_count == 0
    assert report.docs_path == docs_dir.resolve() / "index.html"
    assert report.docs_path.is_file()
    markdown = report.to_markdown()
    assert markdown.startswith(f"### Registry validation passed: `{SAMPLE_CSV}`")
    assert "1,000 rows; 16 of 16 expectations met." in markdown


def test_parquet_validates(tmp_path: Path, docs_dir: Path) -> None:
    report = validate_registry(generate_registry_file(200, 3, tmp_path / "r.parquet"), docs_dir)
    assert report.success and report.row_count == 200


def test_docs_default_under_the_current_directory(
    tmp_path: Path, write_registry: WriteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate_registry(write_registry())
    assert report.success
    assert report.docs_path == tmp_path / ".streamenrich" / "data_docs" / "index.html"
    assert report.docs_path.is_file()


# --- failing reports: one expectation, exact counts -------------------------------------


def test_duplicate_ruts_fail_uniqueness_across_spellings(
    write_registry: WriteRegistry, docs_dir: Path
) -> None:
    path = write_registry([*GOOD_ROWS, "12.345.678-5,Otra Persona,retail,CL-RM,low,false,1"])
    report = validate_registry(path, docs_dir)
    assert not report.success
    assert failed(report) == {(UNIQUE, "rut")}
    unique = report.result_for(UNIQUE, "rut")
    assert unique.unexpected_count == 2
    assert unique.unexpected_values == ("*****678-5", "*****678-5")
    assert unique.unexpected_rows == (1, 4)


def test_bad_check_digits_fail_the_custom_expectation(
    write_registry: WriteRegistry, docs_dir: Path
) -> None:
    bad = [
        "12345678-9,Ana Rojas,retail,CL-RM,low,false,1",
        "7.654.321-0,Bo Díaz,sme,CL-RM,low,false,1",
    ]
    report = validate_registry(write_registry([*GOOD_ROWS, *bad]), docs_dir)
    assert failed(report) == {(VALID_RUT, "rut")}
    result = report.result_for(VALID_RUT, "rut")
    assert result.unexpected_count == 2
    assert result.unexpected_values == ("******78-9", "*******21-0")
    assert result.unexpected_rows == (4, 5)
    assert "| **FAIL** | expect_column_values_to_be_valid_rut | rut | 2 |" in report.to_markdown()


def test_data_docs_never_show_a_whole_rut(write_registry: WriteRegistry, docs_dir: Path) -> None:
    rows = [*GOOD_ROWS, "12345678-9,Ana Rojas,retail,CL-RM,low,false,1", GOOD_ROWS[1]]
    validate_registry(write_registry(rows), docs_dir)
    pages = "".join(page.read_text(encoding="utf-8") for page in docs_dir.rglob("*.html"))
    assert "******78-9" in pages and "****321-6" in pages
    assert "12345678-9" not in pages and "7654321-6" not in pages


def test_missing_column_fails_the_column_list_and_its_expectations(
    write_registry: WriteRegistry, docs_dir: Path
) -> None:
    header = HEADER.removesuffix(",credit_limit")
    rows = [row.rsplit(",", 1)[0] for row in GOOD_ROWS]
    report = validate_registry(write_registry(rows, header=header), docs_dir)
    assert failed(report) == {
        (COLUMNS, None),
        (NOT_NULL, "credit_limit"),
        (BETWEEN, "credit_limit"),
    }
    assert report.result_for(COLUMNS).observed_value == str(header.split(","))
    assert report.result_for(BETWEEN, "credit_limit").error == (
        'Error: The column "credit_limit" in BatchData does not exist.'
    )


def test_extra_column_fails_only_the_column_list(
    write_registry: WriteRegistry, docs_dir: Path
) -> None:
    rows = [f"{row},x@example.cl" for row in GOOD_ROWS]
    report = validate_registry(write_registry(rows, header=HEADER + ",email"), docs_dir)
    assert failed(report) == {(COLUMNS, None)}


def test_header_only_fails_the_row_count(write_registry: WriteRegistry, docs_dir: Path) -> None:
    report = validate_registry(write_registry([]), docs_dir)
    assert report.row_count == 0
    assert failed(report) == {(ROW_COUNT, None)}
    assert report.result_for(ROW_COUNT).observed_value == "0"


def test_values_outside_their_sets_and_range(write_registry: WriteRegistry, docs_dir: Path) -> None:
    rows = [
        *GOOD_ROWS,
        "11111111-1,Uno,vip,CL-RM,low,false,1",
        "22222222-2,Dos,retail,RM,extreme,false,-1",
        "33333333-3,Tres,retail,CL-XX,low,false,1000000001",
        "44444444-4,,retail,CL-RM,,false,",
    ]
    report = validate_registry(write_registry(rows), docs_dir)
    assert failed(report) == {
        (IN_SET, "segment"),
        (IN_SET, "region"),
        (IN_SET, "risk_level"),
        (BETWEEN, "credit_limit"),
        (NOT_NULL, "full_name"),
        (NOT_NULL, "risk_level"),
        (NOT_NULL, "credit_limit"),
    }
    assert report.result_for(IN_SET, "segment").unexpected_values == ("vip",)
    assert report.result_for(IN_SET, "region").unexpected_values == ("RM", "CL-XX")
    assert report.result_for(IN_SET, "risk_level").unexpected_values == ("extreme",)
    between = report.result_for(BETWEEN, "credit_limit")
    assert (between.unexpected_count, between.unexpected_values) == (2, ("-1", "1000000001"))
    assert report.result_for(NOT_NULL, "full_name").unexpected_rows == (7,)


# --- files that cannot be validated: a clear error --------------------------------------


def _error(path: Path, docs_dir: Path) -> str:
    with pytest.raises(RegistryFileError) as caught:
        validate_registry(path, docs_dir)
    assert caught.value.path == str(path)
    assert str(caught.value) == f"registry file {path}: {caught.value.problem}"
    return caught.value.problem


def test_empty_file(write_registry: WriteRegistry, docs_dir: Path) -> None:
    problem = _error(write_registry(b""), docs_dir)
    assert problem == "is empty (0 bytes): a registry file has at least a header"


def test_semicolon_delimiter(write_registry: WriteRegistry, docs_dir: Path) -> None:
    rows = [row.replace(",", ";") for row in GOOD_ROWS]
    problem = _error(write_registry(rows, header=HEADER.replace(",", ";")), docs_dir)
    assert problem.endswith("it looks delimited by ';', but registry files are comma-separated")


def test_latin1_bytes(write_registry: WriteRegistry, docs_dir: Path) -> None:
    text = "\n".join([HEADER, *GOOD_ROWS]) + "\n"
    problem = _error(write_registry(text.encode("latin-1")), docs_dir)
    offset = text.encode("latin-1").index(b"\xed")  # the í of María
    assert problem == (
        f"is not UTF-8 text: byte 0xed at offset {offset} (line 2) is not valid UTF-8; "
        "re-save the file as UTF-8 (it may be Latin-1/Windows-1252)"
    )


def test_png_file(write_registry: WriteRegistry, docs_dir: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
    assert _error(write_registry(png), docs_dir) == "is not a CSV text file: it is a PNG image"


def test_random_bytes(write_registry: WriteRegistry, docs_dir: Path) -> None:
    noise = random.Random(7).randbytes(4096)
    assert b"\x00" in noise
    problem = _error(write_registry(noise), docs_dir)
    assert problem == "is not a CSV text file: it contains NUL bytes (binary)"


def test_truncated_parquet(tmp_path: Path, docs_dir: Path) -> None:
    whole = generate_registry_file(100, 1, tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(whole[: len(whole) // 2])
    problem = _error(path, docs_dir)
    assert problem.startswith("is not a readable Parquet file: ")
    assert "magic bytes not found" in problem


def test_parquet_with_a_wrong_type(tmp_path: Path, docs_dir: Path) -> None:
    table = generate_registry(10, seed=1)
    index = table.column_names.index("watchlist")
    table = table.set_column(index, "watchlist", table["watchlist"].cast(pa.string()))
    pq.write_table(table, tmp_path / "typed.parquet")
    problem = _error(tmp_path / "typed.parquet", docs_dir)
    assert problem == "has columns of the wrong type: watchlist is string, expected boolean"


def test_malformed_lines(write_registry: WriteRegistry, docs_dir: Path) -> None:
    rows = [*GOOD_ROWS, "11111111-1,Short,retail,CL-RM,low,false", "x,y"]
    problem = _error(write_registry(rows), docs_dir)
    assert problem == (
        "2 malformed rows (not 7 fields), e.g. row 4 (6 fields, RUT *****111-1), "
        "row 5 (2 fields, RUT x)"
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            "11111111-1,Uno,retail,CL-RM,low,yes,1",
            "1 row has a watchlist that is not true or false, e.g. row 4: 'yes'",
        ),
        (
            "11111111-1,Uno,retail,CL-RM,low,false,1.5",
            "1 row has a credit_limit that is not an integer, e.g. row 4: '1.5'",
        ),
    ],
    ids=["watchlist", "credit_limit"],
)
def test_values_of_the_wrong_type(
    write_registry: WriteRegistry, docs_dir: Path, row: str, problem: str
) -> None:
    assert _error(write_registry([*GOOD_ROWS, row]), docs_dir) == problem


def test_missing_file(tmp_path: Path, docs_dir: Path) -> None:
    assert _error(tmp_path / "absent.csv", docs_dir) == "does not exist"


@pytest.mark.slow
def test_a_million_rows(tmp_path: Path, docs_dir: Path) -> None:
    path = generate_registry_file(1_000_000, 2, tmp_path / "big.parquet")
    started = time.perf_counter()
    report = validate_registry(path, docs_dir)
    elapsed = time.perf_counter() - started
    assert report.success and report.row_count == 1_000_000
    assert elapsed < 120, f"{elapsed:.1f} s"
