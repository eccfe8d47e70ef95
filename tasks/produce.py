"""The synthetic producer: events with a known mixture, published to the input stream."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from streamenrich.kinesis.client import kinesis_client
from streamenrich.producer import generate_events
from streamenrich.publish import publish_events, registry_ruts
from tasks.retries import retry_transient


@task(retries=2, retry_delay_seconds=[5, 15], retry_condition_fn=retry_transient)
def produce_events(
    stream: str,
    reference_path: str,
    count: int | None = None,
    rate_per_s: float | None = None,
    duration_s: float | None = None,
    unknown_share: float = 0.1,
    malformed_share: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Publish ``count`` events, or ``rate_per_s`` events a second for ``duration_s``.

    The mixture: ``unknown_share`` valid RUTs that are not in the registry, ``malformed_share``
    records that must end in the dead-letter stream, the rest people of the registry.
    """
    logger = get_run_logger()
    if count is None:
        if rate_per_s is None or duration_s is None:
            raise ValueError("give count, or rate_per_s with duration_s")
        count = int(rate_per_s * duration_s)
    known = registry_ruts(reference_path)
    records = generate_events(
        count, known, seed=seed, unknown_share=unknown_share, malformed_share=malformed_share
    )
    progress_id = create_progress_artifact(
        progress=0.0, key="producer-progress", description=f"events put to {stream}"
    )
    step = max(1, count // 20)
    last_reported = [0]

    def report(sent: int) -> None:
        if sent - last_reported[0] >= step or sent == count:
            last_reported[0] = sent
            update_progress_artifact(progress_id, 100.0 * sent / max(count, 1))

    result = publish_events(
        kinesis_client(), stream, records, rate_per_s=rate_per_s, on_progress=report
    )
    logger.info(
        "put %d events to %s in %.1fs (%.0f/s, %d calls, %d entries retried)",
        result.records,
        stream,
        result.seconds,
        result.records_per_s,
        result.calls,
        result.retried_entries,
    )
    return {
        "stream": stream,
        "records": result.records,
        "seconds": round(result.seconds, 3),
        "records_per_s": round(result.records_per_s, 1),
        "retried_entries": result.retried_entries,
    }
