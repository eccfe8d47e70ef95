"""Publish synthetic events to the input stream."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.credentials import use_aws_credentials
from tasks.produce import produce_events


@flow(name="produce-events", log_prints=True)
def produce_events_flow(
    stream: str = "events",
    reference_path: str = "reference_data/persons.csv",
    count: int | None = 1_000,
    rate_per_s: float | None = None,
    duration_s: float | None = None,
    unknown_share: float = 0.1,
    malformed_share: float = 0.05,
    seed: int = 0,
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """``count`` events, or ``rate_per_s`` for ``duration_s`` (set ``count`` to null)."""
    use_aws_credentials(aws_credentials_block)
    return produce_events(
        stream,
        reference_path,
        count,
        rate_per_s,
        duration_s,
        unknown_share,
        malformed_share,
        seed,
    )
