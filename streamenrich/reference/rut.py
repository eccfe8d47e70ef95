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


# The steps of the Spark form, shared by its single-expression and staged variants.


def _compact(value: Column) -> Column:
    """The digits and check digit without dots or dash; null unless the shape is right, so
    that nothing below ever casts a non-digit (ANSI)."""
    from pyspark.sql import functions as F

    text = F.trim(value, F.lit(SURROUNDING))
    shape_ok = (F.length(value) <= MAX_RUT_LENGTH) & text.rlike(RUT_PATTERN)
    return F.when(shape_ok, F.regexp_replace(text, r"[.-]", ""))


def _body_and_given(compact: Column) -> tuple[Column, Column]:
    """The body zero-padded to 8 digits, and the given check digit (upper case)."""
    from pyspark.sql import functions as F

    body = F.lpad(F.substring(compact, 1, F.length(compact) - 1), 8, "0")
    return body, F.upper(F.substring(compact, -1, 1))


def _expected_and_stripped(body: Column) -> tuple[Column, Column]:
    """The check digit the body calls for, and the body without leading zeros."""
    from pyspark.sql import functions as F

    weighted = sum(
        (F.substring(body, i + 1, 1).cast("int") * weight for i, weight in enumerate(_WEIGHTS)),
        F.lit(0),
    )
    expected = F.substring(F.lit("0123456789K"), (weighted % 11) + 1, 1)
    return expected, F.regexp_replace(body, r"^0+", "")


def _canonical(given: Column, expected: Column, stripped: Column) -> Column:
    from pyspark.sql import functions as F

    valid = (given == expected) & (F.length(stripped) > 0)
    return F.when(valid, F.concat(stripped, F.lit("-"), given))


def canonical_rut_column(value: Column) -> Column:
    """A Spark expression equal to :func:`normalize_rut` of a string column (null if invalid).

    Built from native functions only (trim, rlike, regexp_replace, substring arithmetic), so
    it runs in the JVM with whole-stage code generation.
    """
    body, given = _body_and_given(_compact(value))
    return _canonical(given, *_expected_and_stripped(body))


def with_canonical_rut(frame: DataFrame, column: str, alias: str) -> DataFrame:
    """``frame`` with ``alias`` = :func:`canonical_rut_column` of ``column``, computed in steps.

    The single expression refers to its intermediate values (the compact digits, the padded
    body) several times each, and Spark evaluates every reference: staged as columns of
    their own (which ``CollapseProject`` does not copy into their several consumers), each
    is computed once per row.
    """
    from pyspark.sql import functions as F

    staged = frame.select("*", _compact(F.col(column)).alias("_rc"))
    body, given = _body_and_given(F.col("_rc"))
    staged = staged.select("*", body.alias("_rb"), given.alias("_rg"))
    expected, stripped = _expected_and_stripped(F.col("_rb"))
    staged = staged.select("*", expected.alias("_re"), stripped.alias("_rs"))
    result = _canonical(F.col("_rg"), F.col("_re"), F.col("_rs"))
    return staged.select("*", result.alias(alias)).drop("_rc", "_rb", "_rg", "_re", "_rs")
