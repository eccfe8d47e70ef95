"""Validating the reference registry with Great Expectations, reported as artifacts."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from streamenrich.reference import validate_registry


class RegistryValidationFailed(RuntimeError):
    """The registry did not meet its expectation suite."""


@task
def validate_reference(reference_path: str, docs_dir: str | None = None) -> dict[str, Any]:
    """Validate the registry; publish table, markdown and Data Docs link artifacts.

    Raises :class:`RegistryValidationFailed` (the flow fails) when an expectation is not met.
    """
    logger = get_run_logger()
    report = validate_registry(reference_path, docs_dir)
    rows = [
        {
            "expectation": r.expectation_type,
            "column": r.column or "",
            "success": r.success,
            "unexpected_count": r.unexpected_count,
            "examples": ", ".join(r.unexpected_values),
        }
        for r in report.results
    ]
    create_table_artifact(
        key="registry-validation", table=rows, description="Registry expectations, one per row"
    )
    create_markdown_artifact(key="registry-validation-summary", markdown=report.to_markdown())
    create_link_artifact(
        key="registry-data-docs",
        link=report.docs_path.resolve().as_uri(),
        link_text="Great Expectations Data Docs",
    )
    summary = {"path": report.path, "success": report.success, "rows": report.row_count}
    if not report.success:
        failed = ", ".join(f"{r.expectation_type}({r.column or ''})" for r in report.failures)
        logger.error("registry %s failed validation: %s", reference_path, failed)
        raise RegistryValidationFailed(f"registry {reference_path} failed: {failed}")
    logger.info("registry %s valid: %d rows", reference_path, report.row_count)
    return summary
