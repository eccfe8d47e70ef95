"""Validate the reference registry with Great Expectations."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.reference import validate_reference


@flow(name="validate-reference", log_prints=True)
def validate_reference_flow(
    reference_path: str = "reference_data/persons.csv", docs_dir: str | None = None
) -> dict[str, Any]:
    """Fails when the registry does not meet its suite; artifacts show why."""
    return validate_reference(reference_path, docs_dir)
