"""The main flow: provision -> validate -> enrichment (with the producer when asked)."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.provision import provision_streams
from tasks.credentials import use_aws_credentials
from tasks.enrichment import run_enrichment
from tasks.produce import produce_events as produce_events_task
from tasks.reference import validate_reference


@flow(name="enrichment-pipeline", log_prints=True)
def enrichment_pipeline(
    input_stream: str = "events",
    output_stream: str = "enriched",
    dead_letter_stream: str = "dead-letter",
    shards: int = 4,
    reference_path: str = "reference_data/persons.csv",
    rules_path: str = "reference_data/rules.yaml",
    mode: Literal["available_now", "continuous"] = "available_now",
    run_seconds: float = 60.0,
    checkpoint_dir: str = ".streamenrich/checkpoints/enrichment",
    produce_events: int = 0,
    spark_master: str = "local[*]",
    timeout_s: float = 1_800.0,
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline once; fails if the registry is invalid (nothing is enriched then).

    With ``produce_events`` > 0 a synthetic producer publishes that many events: in
    ``continuous`` mode at the same time as the enrichment, in ``available_now`` mode just
    before it (so that the run sees them). ``aws_credentials_block`` names an optional
    prefect-aws ``AwsCredentials`` block; without it the standard credential chain is used.
    """
    logger = get_run_logger()
    use_aws_credentials(aws_credentials_block)
    provision_streams(input_stream, output_stream, dead_letter_stream, shards)
    validation = validate_reference(reference_path)
    enrichment_args = dict(
        input_stream=input_stream,
        output_stream=output_stream,
        dead_letter_stream=dead_letter_stream,
        reference_path=reference_path,
        rules_path=rules_path,
        checkpoint_dir=checkpoint_dir,
        mode=mode,
        run_seconds=run_seconds,
        timeout_s=timeout_s,
        spark_master=spark_master,
    )
    produced: dict[str, Any] | None = None
    if produce_events > 0 and mode == "continuous":
        producer = produce_events_task.submit(input_stream, reference_path, produce_events)
        enrichment = run_enrichment(**enrichment_args)
        produced = producer.result()
    else:
        if produce_events > 0:
            produced = produce_events_task(input_stream, reference_path, produce_events)
        enrichment = run_enrichment(**enrichment_args)
    summary = {"validation": validation, "produced": produced, "enrichment": enrichment}
    create_markdown_artifact(key="pipeline-summary", markdown=_markdown(summary))
    logger.info("pipeline summary: %s", summary)
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    run = summary["enrichment"]
    produced = summary["produced"]
    lines = [
        "## streamenrich pipeline",
        "",
        f"- registry: {summary['validation']['rows']:,} rows, valid",
        f"- produced: {produced['records']:,} events" if produced else "- produced: none",
        f"- read {run['records_read']:,}: matched {run['matched']:,}, unmatched "
        f"{run['unmatched']:,}, unknown {run['unknown']:,}, dead letter {run['dead_letter']:,}"
        f" ({'balanced' if run['balanced'] else 'NOT BALANCED'})",
        f"- {run['micro_batches']} micro-batches, {run['records_per_s']:,.0f} records/s",
    ]
    return "\n".join(lines)
