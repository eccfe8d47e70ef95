"""Provisioning the input, output and dead-letter streams."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.streams import ensure_stream
from tasks.retries import retry_transient


@task(retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_transient)
def provision_stream(
    name: str,
    shards: int,
    retention_hours: int = 24,
    kms_key_id: str | None = None,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Create the stream if missing, else check it; fail clearly if it is in a wrong state."""
    logger = get_run_logger()
    status = ensure_stream(
        kinesis_client(),
        name,
        shards,
        retention_hours=retention_hours,
        kms_key_id=kms_key_id,
        timeout_s=timeout_s,
    )
    what = ", ".join(status.changes) or "already as configured"
    logger.info("stream %s: %s (%d shards, %s)", name, what, status.open_shards, status.status)
    return asdict(status)
