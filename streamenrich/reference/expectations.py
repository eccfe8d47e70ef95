"""The registry's Great Expectations suite, and ``ExpectColumnValuesToBeValidRut``.

The suite is data: ``reference_data/expectations/registry.json``, read by
:func:`load_registry_suite`. :func:`build_registry_suite` derives the same suite from the
contract (``contract.py``); a test holds the stored file equal to it, and
``python -m streamenrich.reference.expectations`` rewrites the file after a contract change.

GX drops an expectation of a type it does not know while loading a suite, with only a log
line. This module defines the custom type before any suite is loaded, and
:func:`load_registry_suite` refuses a suite that lost an expectation on the way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import great_expectations as gx
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine
from great_expectations.expectations.core.expect_column_values_to_be_between import (
    ExpectColumnValuesToBeBetween,
)
from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
    ExpectColumnValuesToBeInSet,
)
from great_expectations.expectations.core.expect_column_values_to_be_unique import (
    ExpectColumnValuesToBeUnique,
)
from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
    ExpectColumnValuesToNotBeNull,
)
from great_expectations.expectations.core.expect_table_columns_to_match_ordered_list import (
    ExpectTableColumnsToMatchOrderedList,
)
from great_expectations.expectations.core.expect_table_row_count_to_be_between import (
    ExpectTableRowCountToBeBetween,
)
from great_expectations.expectations.expectation import ColumnMapExpectation, Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_map_metric_provider import (
    ColumnMapMetricProvider,
)
from great_expectations.render.components import (
    LegacyRendererType,
    RenderedStringTemplateContent,
)
from great_expectations.render.renderer.renderer import renderer

from streamenrich.reference.contract import (
    CREDIT_LIMIT_MAX,
    CREDIT_LIMIT_MIN,
    REGIONS,
    REGISTRY_COLUMNS,
    RISK_LEVELS,
    SEGMENTS,
)
from streamenrich.reference.rut import is_valid_rut

SUITE_NAME = "reference_registry"
# The repository's stored suite (the library resolves it from its own location).
DEFAULT_SUITE_PATH = (
    Path(__file__).resolve().parents[2] / "reference_data" / "expectations" / "registry.json"
)


class ExpectationSuiteError(ValueError):
    """The stored expectation suite is missing, unreadable, or lost expectations when loaded."""


class ColumnValuesValidRut(ColumnMapMetricProvider):
    """The metric behind :class:`ExpectColumnValuesToBeValidRut`: ``rut.is_valid_rut`` per value."""

    condition_metric_name = "column_values.valid_rut"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: Any, **kwargs: Any) -> Any:
        return column.map(is_valid_rut)


class ExpectColumnValuesToBeValidRut(ColumnMapExpectation):
    """Expect each value to be a valid Chilean RUT: any accepted spelling with the right check
    digit, as :func:`streamenrich.reference.rut.is_valid_rut` decides.

    Nulls are skipped, as by every column map expectation: pair it with
    ``ExpectColumnValuesToNotBeNull``.

    >>> ExpectColumnValuesToBeValidRut(column="rut")  # doctest: +SKIP
    """

    map_metric = "column_values.valid_rut"
    success_keys = ("mostly",)
    args_keys = ("column",)
    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["streamenrich", "column map expectation", "chile"],
        "contributors": ["streamenrich"],
        "requirements": ["python-stdnum"],
        "has_full_test_suite": True,
        "manually_reviewed_code": True,
    }

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(
        cls,
        configuration: ExpectationConfiguration | None = None,
        result: ExpectationValidationResult | None = None,
        runtime_configuration: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        """How Data Docs describe the expectation (otherwise GX prints its raw arguments)."""
        runtime = runtime_configuration or {}
        template = "values must be valid Chilean RUTs (right check digit)."
        if runtime.get("include_column_name") is not False:
            template = f"$column {template}"
        column = configuration.kwargs.get("column") if configuration else None
        content = {"template": template, "params": {"column": column}}
        if runtime.get("styling"):
            content["styling"] = runtime["styling"]
        return [
            RenderedStringTemplateContent(
                content_block_type="string_template", string_template=content
            )
        ]


def build_registry_suite() -> gx.ExpectationSuite:
    """The registry's expectations, from the contract: columns, rows, then column by column."""
    expectations: list[Expectation] = [
        ExpectTableColumnsToMatchOrderedList(column_list=list(REGISTRY_COLUMNS)),
        ExpectTableRowCountToBeBetween(min_value=1),
    ]
    # Map expectations skip nulls, so every column also gets a not-null expectation.
    expectations += [ExpectColumnValuesToNotBeNull(column=name) for name in REGISTRY_COLUMNS]
    expectations += [
        ExpectColumnValuesToBeUnique(column="rut"),
        ExpectColumnValuesToBeValidRut(column="rut"),
        ExpectColumnValuesToBeInSet(column="segment", value_set=list(SEGMENTS)),
        ExpectColumnValuesToBeInSet(column="region", value_set=list(REGIONS)),
        ExpectColumnValuesToBeInSet(column="risk_level", value_set=list(RISK_LEVELS)),
        ExpectColumnValuesToBeInSet(column="watchlist", value_set=[True, False]),
        ExpectColumnValuesToBeBetween(
            column="credit_limit", min_value=CREDIT_LIMIT_MIN, max_value=CREDIT_LIMIT_MAX
        ),
    ]
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=expectations,
        meta={"contract": "streamenrich.reference.contract"},
    )


def suite_document(suite: gx.ExpectationSuite) -> dict[str, Any]:
    """The suite as stored: GX's JSON form without ids (ids belong to a context, not a file)."""
    document: dict[str, Any] = suite.to_json_dict()
    document.pop("id", None)
    for expectation in document["expectations"]:
        expectation.pop("id", None)
    return document


def write_registry_suite(path: str | os.PathLike[str] = DEFAULT_SUITE_PATH) -> Path:
    """Writes :func:`build_registry_suite` to ``path`` as indented JSON."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(suite_document(build_registry_suite()), indent=2, sort_keys=True)
    target.write_text(text + "\n", encoding="utf-8")
    return target


def load_registry_suite(path: str | os.PathLike[str] = DEFAULT_SUITE_PATH) -> gx.ExpectationSuite:
    """The stored suite at ``path``, with every expectation in it, or ExpectationSuiteError."""
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
        stored = [item["type"] for item in document["expectations"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExpectationSuiteError(f"expectation suite {source} cannot be read: {exc}") from exc
    try:
        suite = gx.ExpectationSuite(**document)
    except Exception as exc:  # GX raises its own errors and pydantic's for a bad document
        raise ExpectationSuiteError(f"expectation suite {source} is not valid: {exc}") from exc
    loaded = [expectation.expectation_type for expectation in suite.expectations]
    if loaded != stored:
        lost = sorted(set(stored) - set(loaded)) or stored
        raise ExpectationSuiteError(
            f"expectation suite {source}: GX did not load {lost} (an unknown type, or "
            "arguments it refuses); only the types defined before loading are known"
        )
    return suite


if __name__ == "__main__":
    print(write_registry_suite(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SUITE_PATH))
