"""Chilean RUTs: validation, the canonical form ``12345678-5``, masking for logs.

Accepted spellings: ``12.345.678-5``, ``12345678-5``, ``123456785``, a lowercase ``k`` check
digit, surrounding spaces, tabs or newlines. Everything else is invalid: a wrong check
digit, letters, other separators, an empty or too long value. The check digit is verified
by python-stdnum (``stdnum.cl.rut``).

Two implementations that agree on every input (a property test holds them to it):
:func:`normalize_rut` for Python code, :func:`canonical_rut_column` as a native Spark
expression for the per-record path (no Python UDF).

>>> normalize_rut(" 12.345.678-5 ")
'12345678-5'
>>> normalize_rut("12345678-K") is None
True
>>> mask_rut("12345678-5")
'*****678-5'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stdnum.cl import rut as stdnum_rut
from stdnum.exceptions import ValidationError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Only these are trimmed from the ends; Spark's trim(chars) removes the same set.
SURROUNDING = " \t\r\n"
# A body of 7 or 8 ASCII digits (optionally grouped by dots), an optional dash, a check digit.
RUT_PATTERN = r"^([0-9]{1,2}\.[0-9]{3}\.[0-9]{3}|[0-9]{7,8})-?([0-9kK])$"
_RUT_RE = re.compile(RUT_PATTERN)
# Anything longer than this is refused before any other work.
MAX_RUT_LENGTH = 32
# stdnum's weights, applied to the 8-digit zero-padded body from left to right.
_WEIGHTS = (8, 9, 4, 5, 6, 7, 8, 9)


def normalize_rut(value: str | None) -> str | None:
    """The canonical ``<body>-<check digit>`` (no leading zeros, upper-case K), or ``None``."""
    if value is None or len(value) > MAX_RUT_LENGTH:
        return None
    match = _RUT_RE.match(value.strip(SURROUNDING))
    if match is None or match.end() != len(value.strip(SURROUNDING)):
        return None
    body = match.group(1).replace(".", "")
    check = match.group(2).upper()
    try:
        stdnum_rut.validate(body + check)
    except ValidationError:
        return None
    stripped = body.lstrip("0")
    if not stripped:
        return None
    return f"{stripped}-{check}"


def is_valid_rut(value: str | None) -> bool:
    return normalize_rut(value) is not None


def check_digit(body: int | str) -> str:
    """The check digit of a RUT body: ``check_digit(12345678) == '5'``."""
    return str(stdnum_rut.calc_check_digit(str(body)))


def format_rut(body: int) -> str:
    """The canonical RUT of a body number: ``format_rut(12345678) == '12345678-5'``."""
    return f"{body}-{check_digit(body)}"


def mask_rut(value: str | None) -> str:
    """A RUT safe for logs and reports: all but the last three body digits hidden."""
    canonical = normalize_rut(value)
    if canonical is None:
        return "<invalid rut>" if value else "<empty>"
    body, check = canonical.split("-")
    return f"{'*' * max(len(body) - 3, 0)}{body[-3:]}-{check}"


def canonical_rut_column(value: Column) -> Column:
    """A Spark expression equal to :func:`normalize_rut` of a string column (null if invalid).

    Built from native functions only (trim, rlike, regexp_replace, substring arithmetic), so
    it runs in the JVM with whole-stage code generation.
    """
    from pyspark.sql import functions as F

    text = F.trim(value, F.lit(SURROUNDING))
    shape_ok = (F.length(value) <= MAX_RUT_LENGTH) & text.rlike(RUT_PATTERN)
    # Null unless the shape is right, so that nothing below ever casts a non-digit (ANSI).
    compact = F.when(shape_ok, F.regexp_replace(text, r"[.-]", ""))
    body = F.lpad(F.substring(compact, 1, F.length(compact) - 1), 8, "0")
    given = F.upper(F.substring(compact, -1, 1))
    weighted = sum(
        (F.substring(body, i + 1, 1).cast("int") * weight for i, weight in enumerate(_WEIGHTS)),
        F.lit(0),
    )
    expected = F.substring(F.lit("0123456789K"), (weighted % 11) + 1, 1)
    stripped = F.regexp_replace(body, r"^0+", "")
    valid = (given == expected) & (F.length(stripped) > 0)
    return F.when(valid, F.concat(stripped, F.lit("-"), given))


def with_canonical_rut(frame: DataFrame, column: str, alias: str) -> DataFrame:
    """``frame`` with ``alias`` = :func:`canonical_rut_column` of ``column``, computed in steps.

    The single expression refers to its intermediate values (the trimmed text, the compact
    digits, the padded body) several times each, and Spark evaluates every reference: staged
    as columns of their own (which ``CollapseProject`` does not copy into their several
    consumers), each is computed once per row.
    """
    from pyspark.sql import functions as F

    value = F.col(column)
    text = F.trim(value, F.lit(SURROUNDING))
    shape_ok = (F.length(value) <= MAX_RUT_LENGTH) & text.rlike(RUT_PATTERN)
    staged = frame.select("*", F.when(shape_ok, F.regexp_replace(text, r"[.-]", "")).alias("_rc"))
    compact = F.col("_rc")
    staged = staged.select(
        "*",
        F.lpad(F.substring(compact, 1, F.length(compact) - 1), 8, "0").alias("_rb"),
        F.upper(F.substring(compact, -1, 1)).alias("_rg"),
    )
    body, given = F.col("_rb"), F.col("_rg")
    weighted = sum(
        (F.substring(body, i + 1, 1).cast("int") * weight for i, weight in enumerate(_WEIGHTS)),
        F.lit(0),
    )
    expected = F.substring(F.lit("0123456789K"), (weighted % 11) + 1, 1)
    staged = staged.select(
        "*", expected.alias("_re"), F.regexp_replace(body, r"^0+", "").alias("_rs")
    )
    valid = (given == F.col("_re")) & (F.length(F.col("_rs")) > 0)
    result = F.when(valid, F.concat(F.col("_rs"), F.lit("-"), given))
    return staged.select("*", result.alias(alias)).drop("_rc", "_rb", "_rg", "_re", "_rs")
