"""Create or check the input, output and dead-letter streams."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.credentials import use_aws_credentials
from tasks.streams import provision_stream


@flow(name="provision-streams", log_prints=True)
def provision_streams(
    input_stream: str = "events",
    output_stream: str = "enriched",
    dead_letter_stream: str = "dead-letter",
    shards: int = 4,
    retention_hours: int = 24,
    kms_key_id: str | None = None,
    aws_credentials_block: str | None = None,
) -> list[dict[str, Any]]:
    """Idempotent: a second run changes nothing; a stream in a wrong state fails the run."""
    use_aws_credentials(aws_credentials_block)
    futures = [
        provision_stream.submit(name, shards, retention_hours, kms_key_id)
        for name in (input_stream, output_stream, dead_letter_stream)
    ]
    return [future.result() for future in futures]
