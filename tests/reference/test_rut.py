"""RUT normalisation: the Python and the native Spark implementation agree everywhere."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamenrich.reference.rut import (
    canonical_rut_column,
    check_digit,
    format_rut,
    mask_rut,
    normalize_rut,
    with_canonical_rut,
)

VALID = {
    "12.345.678-5": "12345678-5",
    "12345678-5": "12345678-5",
    "123456785": "12345678-5",
    "  12345678-5\t": "12345678-5",
    "\n12.345.678-5 ": "12345678-5",
    "7.654.321-6": "7654321-6",
    "76543216": "7654321-6",
    "10.000.013-k": "10000013-K",
    "10000013K": "10000013-K",
}
INVALID = [
    None,
    "",
    "   ",
    "12345678-9",  # wrong check digit
    "12.345.678-4",
    "12a45678-5",
    "abcdefgh-k",
    "12345678--5",
    "12_345_678-5",
    "12.345678-5",  # dots must group both thousands
    "123-4",
    "1" * 40 + "-5",
    "00000000-0",
    "12345678-5 x",
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18-5",  # full-width digits
]


@pytest.mark.parametrize(("raw", "canonical"), VALID.items())
def test_accepted_spellings(raw: str, canonical: str) -> None:
    assert normalize_rut(raw) == canonical


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_values(raw: str | None) -> None:
    assert normalize_rut(raw) is None


def test_check_digit_and_format() -> None:
    assert check_digit(12345678) == "5"
    assert format_rut(10000013) == "10000013-K"
    assert mask_rut(" 12.345.678-5") == "*****678-5"
    assert mask_rut("garbage") == "<invalid rut>"


def _spark_normalize(spark: Any, values: list[str | None]) -> list[str | None]:
    frame = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i INT, rut STRING")
    rows = frame.select("i", canonical_rut_column(frame.rut).alias("c")).collect()
    by_index = {row.i: row.c for row in rows}
    # The staged form (what event parsing uses) must agree with the single expression.
    staged = {row.i: row.s for row in with_canonical_rut(frame, "rut", "s").collect()}
    assert staged == by_index
    return [by_index[i] for i in range(len(values))]


def test_spark_agrees_on_the_fixed_cases(spark: Any) -> None:
    values = [*VALID, *INVALID]
    assert _spark_normalize(spark, values) == [normalize_rut(v) for v in values]


def _spellings() -> st.SearchStrategy[str]:
    bodies = st.integers(min_value=1, max_value=99_999_999)

    def spell(body: int, style: int, lower: bool, wrong: bool, pad: str) -> str:
        digit = check_digit(body)
        if wrong:
            digit = "0123456789K"[("0123456789K".index(digit) + 1) % 11]
        if lower:
            digit = digit.lower()
        text = str(body)
        if style == 1 and len(text) >= 7:
            text = f"{int(text[:-6]):d}.{text[-6:-3]}.{text[-3:]}"
        sep = "" if style == 2 else "-"
        return f"{pad}{text}{sep}{digit}{pad}"

    structured = st.builds(
        spell,
        bodies,
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        st.sampled_from(["", " ", "\t"]),
    )
    noise = st.text(alphabet="0123456789kK.- \t-xé", max_size=14)
    return st.one_of(structured, noise, st.text(max_size=40))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(_spellings(), min_size=50, max_size=50))
def test_spark_and_python_agree_on_generated_values(spark: Any, batch: list[str]) -> None:
    assert _spark_normalize(spark, batch) == [normalize_rut(v) for v in batch]
