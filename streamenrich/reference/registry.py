"""Loading the reference registry into Spark, refusing any file that is not exactly a registry.

A registry file is CSV (UTF-8, a header with exactly :data:`REGISTRY_COLUMNS` in order, ``,``
delimiters) or Parquet (those columns, in order, with the types of :data:`REGISTRY_SCHEMA`),
chosen by the suffix (``.csv``, ``.parquet``). :func:`load_registry` never drops or changes a
row silently: a malformed line, a RUT that is not valid, a RUT given twice or bytes that are
not UTF-8 raise :class:`RegistryFileError` naming the file, the number of bad rows and a few
masked examples. The one documented change: RUTs come back in canonical spelling
(``12.345.678-5`` becomes ``12345678-5``).

Spark parses CSV lazily and only the columns a query needs (a row with a bad
``credit_limit`` passes a query that reads ``rut`` alone), so the check at load time touches
every column of every row, once.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from streamenrich.reference.contract import REGISTRY_COLUMNS, REGISTRY_SCHEMA
from streamenrich.reference.rut import canonical_rut_column, mask_rut, normalize_rut

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

RegistryFormat = Literal["csv", "parquet"]
SUFFIXES: dict[str, RegistryFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# How many examples of bad rows an error message or a report shows.
MAX_EXAMPLES = 5
# How much of a file is read to tell text from binary data.
SNIFF_BYTES = 64 * 1024
# The Spark type of each column, from the contract's DDL (``rut STRING, ...``).
COLUMN_TYPES: dict[str, str] = {
    name: kind.lower()
    for name, kind in (field.strip().split() for field in REGISTRY_SCHEMA.split(","))
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one)"),
    (b"\x1f\x8b", "gzip-compressed data"),
)
_CORRUPT = "_corrupt_record"
_REPLACEMENT_CHAR = "\ufffd"


class RegistryFileError(ValueError):
    """A file cannot be read as a registry; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"registry file {self.path}: {problem}")


def registry_format(path: str | os.PathLike[str]) -> RegistryFormat:
    """``"csv"`` or ``"parquet"`` by the file suffix (case-insensitive); anything else raises."""
    suffix = Path(os.fspath(path).rstrip("/")).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(SUFFIXES)
        raise RegistryFileError(path, f"unknown suffix {suffix or '(none)'!r}: use one of {known}")
    return SUFFIXES[suffix]


def mask_value(value: object) -> str:
    """A value of the ``rut`` column, safe to print: :func:`mask_rut` when it is a valid RUT,
    otherwise every character but the last four hidden (``'1234567-0'`` -> ``'*****67-0'``)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "<null>"
    text = str(value)
    if normalize_rut(text) is not None:
        return mask_rut(text)
    if not text.strip():
        return repr(text)
    shown = text[-4:] if len(text) > 4 else text[-1:]
    return "*" * min(len(text) - len(shown), 12) + shown


def columns_problem(found: Sequence[str]) -> str | None:
    """What is wrong with a file's columns, or ``None`` when they are the contract's, in order."""
    expected = list(REGISTRY_COLUMNS)
    found = list(found)
    if found == expected:
        return None
    problem = delimiter_problem(found)
    if problem is not None:
        return problem
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing or extra:
        return f"columns are not the registry's: missing {missing}, unexpected {extra}"
    return f"columns are in the wrong order: {found}, expected {expected}"


def delimiter_problem(header: Sequence[str]) -> str | None:
    """A header that shows the file is not comma-separated UTF-8 CSV (a BOM, ``;``, tabs)."""
    if header and header[0].startswith("\ufeff"):
        return "starts with a UTF-8 byte-order mark (BOM): save it as UTF-8 without BOM"
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in header[0]:
                return (
                    f"has a single column {header[0][:80]!r}: it looks delimited by "
                    f"{delimiter!r}, but registry files are comma-separated"
                )
    return None


def sniff_text(path: str | os.PathLike[str], head: bytes, size: int) -> None:
    """Raises unless ``head`` (the first bytes of a ``size``-byte file) can start a CSV file."""
    if size == 0:
        raise RegistryFileError(path, "is empty (0 bytes): a registry file has at least a header")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            raise RegistryFileError(path, f"is not a CSV text file: it is {kind}")
    if b"\x00" in head:
        raise RegistryFileError(path, "is not a CSV text file: it contains NUL bytes (binary)")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) == size)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, head, exc) from exc


def not_utf8(
    path: str | os.PathLike[str], data: bytes, exc: UnicodeDecodeError
) -> RegistryFileError:
    line = data.count(b"\n", 0, exc.start) + 1
    byte = data[exc.start : exc.start + 1].hex()
    return RegistryFileError(
        path,
        f"is not UTF-8 text: byte 0x{byte} at offset {exc.start} (line {line}) is not valid "
        "UTF-8; re-save the file as UTF-8 (it may be Latin-1/Windows-1252)",
    )


def load_registry(spark: SparkSession, path: str | os.PathLike[str]) -> DataFrame:
    """The registry at ``path`` (CSV or Parquet) as a DataFrame with canonical RUTs.

    The columns are :data:`REGISTRY_COLUMNS` with the types of :data:`REGISTRY_SCHEMA`.
    Every row of the file is checked once, here (one pass over the file); the DataFrame reads
    the file again when used, so cache or broadcast it for repeated joins.

    >>> registry = load_registry(spark, "reference_data/persons.csv")  # doctest: +SKIP
    >>> registry.where("rut = '12345678-5'").first()  # doctest: +SKIP

    Raises:
        RegistryFileError: the file is missing, empty, not UTF-8, not a CSV/Parquet file, has
            other columns, malformed rows, invalid or duplicate RUTs. Nothing is skipped.
    """
    location = os.fspath(path)
    file_format = registry_format(location)
    local = Path(location)
    if "://" not in location and not local.exists():
        raise RegistryFileError(location, "does not exist")
    if file_format == "csv":
        if local.is_file():
            with local.open("rb") as handle:
                sniff_text(location, handle.read(SNIFF_BYTES), local.stat().st_size)
        raw = _read_csv(spark, location)
    else:
        raw = _read_parquet(spark, location)
    _check_rows(spark, location, file_format, raw)
    from pyspark.sql import functions as F

    rest = [F.col(name) for name in REGISTRY_COLUMNS[1:]]
    return raw.select(canonical_rut_column(F.col("rut")).alias("rut"), *rest)


def _read_csv(spark: SparkSession, location: str) -> DataFrame:
    try:
        first = spark.read.text(location).limit(1).collect()
    except _spark_errors() as exc:  # a missing path, no permission
        raise RegistryFileError(location, f"cannot be read: {_first_line(exc)}") from exc
    if not first:
        raise RegistryFileError(location, "is empty: a registry file has at least a header")
    header = next(csv.reader([first[0][0]]), [])
    if any(_REPLACEMENT_CHAR in name for name in header):
        raise RegistryFileError(location, "is not UTF-8 text: its header has undecodable bytes")
    problem = columns_problem(header)
    if problem is not None:
        raise RegistryFileError(location, problem)
    return (
        spark.read.schema(REGISTRY_SCHEMA)
        .option("header", True)
        .option("enforceSchema", False)
        .option("mode", "FAILFAST")
        .option("encoding", "UTF-8")
        .csv(location)
    )


def _read_parquet(spark: SparkSession, location: str) -> DataFrame:
    try:
        found = spark.read.parquet(location).schema
    except _spark_errors() as exc:  # a truncated or non-Parquet file fails reading its footer
        raise RegistryFileError(
            location, f"is not a readable Parquet file: {_first_line(exc)}"
        ) from exc
    problem = columns_problem(found.names)
    if problem is not None:
        raise RegistryFileError(location, problem)
    wrong = [
        f"{field.name} is {field.dataType.simpleString()}, expected {COLUMN_TYPES[field.name]}"
        for field in found.fields
        if field.dataType.simpleString() != COLUMN_TYPES[field.name]
    ]
    if wrong:
        raise RegistryFileError(location, f"has columns of the wrong type: {'; '.join(wrong)}")
    return spark.read.schema(REGISTRY_SCHEMA).parquet(location)


def _check_rows(
    spark: SparkSession, location: str, file_format: RegistryFormat, raw: DataFrame
) -> None:
    """One pass over every column of every row: parse errors, invalid and duplicate RUTs."""
    from pyspark.sql import functions as F

    canonical = canonical_rut_column(F.col("rut"))
    # Spark decodes bad UTF-8 as U+FFFD without an error: flag the rows it happened to.
    mangled = F.lit(False)
    if file_format == "csv":
        for name in (name for name, kind in COLUMN_TYPES.items() if kind == "string"):
            mangled = mangled | F.coalesce(F.col(name).contains(_REPLACEMENT_CHAR), F.lit(False))
    # The canonical RUT is computed once, in a projection: inlined into the aggregates (as
    # count_distinct's Expand does) it was evaluated many times per row, 8x slower at 1M rows.
    # One group per RUT, then a global aggregate: exact, with a single shuffle.
    per_rut = (
        raw.select(
            canonical.alias("canonical"),
            # Hashing every column makes Spark parse every column (FAILFAST fires only on
            # what it parses).
            F.hash(*REGISTRY_COLUMNS).alias("parsed"),
            mangled.alias("mangled"),
        )
        .groupBy("canonical")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.max("parsed").alias("parsed"),
            F.count_if("mangled").alias("mangled"),
        )
    )
    totals: list[Column] = [
        F.sum("rows").alias("rows"),
        F.sum(F.when(F.col("canonical").isNull(), F.col("rows"))).alias("invalid"),
        F.sum(F.when(F.col("canonical").isNotNull(), F.col("rows") - 1)).alias("duplicates"),
        F.max("parsed").alias("parsed"),
        F.sum("mangled").alias("mangled"),
    ]
    try:
        result = per_rut.agg(*totals).first()
    except _spark_errors() as exc:  # FAILFAST: a malformed row stops the job
        if file_format == "csv":
            _raise_malformed(spark, location, exc)
        raise RegistryFileError(location, f"cannot be read: {_first_line(exc)}") from exc
    assert result is not None  # a global aggregate has exactly one row
    if result["mangled"]:
        raise RegistryFileError(
            location,
            f"{_rows(result['mangled'])} bytes that are not valid UTF-8 (Spark could not "
            "decode them); re-save the file as UTF-8",
        )
    if result["invalid"]:
        bad = raw.where(canonical.isNull()).select("rut").limit(MAX_EXAMPLES).collect()
        examples = ", ".join(mask_value(row[0]) for row in bad)
        raise RegistryFileError(
            location, f"{_rows(result['invalid'])} a RUT that is not valid, e.g. {examples}"
        )
    duplicates = result["duplicates"] or 0
    if duplicates:
        repeated = (
            raw.groupBy(canonical.alias("rut"))
            .count()
            .where(F.col("count") > 1)
            .orderBy("rut")
            .limit(MAX_EXAMPLES)
            .collect()
        )
        examples = ", ".join(f"{mask_rut(row['rut'])} ({row['count']}x)" for row in repeated)
        raise RegistryFileError(
            location,
            f"{_rows(duplicates)} the RUT of an earlier row (RUTs must be unique), e.g. {examples}",
        )


def _raise_malformed(spark: SparkSession, location: str, exc: Exception) -> None:
    """Re-reads the file permissively to count and show the rows FAILFAST refused."""
    from pyspark.sql import functions as F

    permissive = (
        spark.read.schema(f"{REGISTRY_SCHEMA}, {_CORRUPT} STRING")
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .csv(location)
        .cache()  # Spark refuses filters on the corrupt-record column of an uncached scan
    )
    try:
        bad = permissive.where(F.col(_CORRUPT).isNotNull())
        count = bad.count()
        lines = [row[0] for row in bad.select(_CORRUPT).limit(MAX_EXAMPLES).collect()]
    except _spark_errors() as diagnosis_exc:
        raise RegistryFileError(location, f"cannot be read: {_first_line(exc)}") from diagnosis_exc
    finally:
        permissive.unpersist()
    if not count:
        raise RegistryFileError(location, f"cannot be read: {_first_line(exc)}") from exc
    examples = ", ".join(mask_value(next(csv.reader([line]), [""])[0]) for line in lines)
    raise RegistryFileError(
        location,
        f"{count} malformed {'row' if count == 1 else 'rows'} (a wrong number of fields, a "
        "watchlist that is not true/false or a credit_limit that is not an integer), e.g. the "
        f"rows of RUT {examples}",
    ) from exc


def _rows(count: int) -> str:
    """``"1 row has"`` or ``"3 rows have"``: the subject of a message about bad rows."""
    return f"{count} row has" if count == 1 else f"{count} rows have"


def _first_line(exc: BaseException) -> str:
    """The headline of a Spark/Py4J error, without the JVM stack or any row data."""
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("An error occurred while calling"):
            return line.removeprefix(": ")[:300]
    return type(exc).__name__


def _spark_errors() -> tuple[type[Exception], ...]:
    """What Spark raises for a file it cannot read: analysis errors and failed jobs."""
    from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JJavaError)
