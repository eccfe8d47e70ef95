"""The Spark enrichment run, reported as artifacts."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from streamenrich.enrich import BUCKETS, RuleSet
from streamenrich.pipeline import EnrichmentJob, Mode, StreamNames
from streamenrich.reference import load_registry
from streamenrich.spark_session import build_spark


class UnbalancedRun(RuntimeError):
    """The bucket counts of the run do not add up to the records read."""


@task(cache_policy=NO_CACHE)
def run_enrichment(
    input_stream: str,
    output_stream: str,
    dead_letter_stream: str,
    reference_path: str,
    rules_path: str,
    checkpoint_dir: str,
    mode: Mode = "available_now",
    run_seconds: float = 60.0,
    timeout_s: float = 1_800.0,
    spark_master: str = "local[*]",
    metadata_path: str | None = None,
    max_records_per_shard: int = 10_000,
    max_fetch_time_ms: int = 1_000,
    trigger_interval_ms: int = 500,
    fail_on_data_loss: bool = True,
) -> dict[str, Any]:
    """Kinesis -> enrich -> output and dead-letter streams; returns the run's summary.

    Bounded in code: ``available_now`` by ``timeout_s``, ``continuous`` by ``run_seconds``.
    ``fail_on_data_loss=False`` lets a run go on past records trimmed before they were read;
    the summary's ``data_loss_gaps`` and the run's artifact say how many stretches.
    """
    logger = get_run_logger()
    rules = RuleSet.from_file(rules_path)  # every rule checked before Spark starts
    spark = build_spark(spark_master, "streamenrich-enrichment")
    registry = load_registry(spark, reference_path)
    job = EnrichmentJob(
        spark,
        StreamNames(input_stream, output_stream, dead_letter_stream),
        registry,
        rules,
        checkpoint_dir=checkpoint_dir,
        metadata_path=metadata_path,
        max_records_per_shard=max_records_per_shard,
        max_fetch_time_ms=max_fetch_time_ms,
        fail_on_data_loss=fail_on_data_loss,
    )
    report = job.run(
        mode, run_seconds=run_seconds, trigger_interval_ms=trigger_interval_ms, timeout_s=timeout_s
    )
    summary = report.summary()
    create_table_artifact(
        key="enrichment-buckets",
        table=[{"bucket": name, "records": summary[name]} for name in BUCKETS]
        + [{"bucket": "records read", "records": summary["records_read"]}],
        description="Every record read lands in exactly one bucket",
    )
    create_markdown_artifact(key="enrichment-run", markdown=_markdown(summary))
    logger.info("enrichment %s", summary)
    if report.data_loss:
        logger.warning(
            "data loss: records trimmed by retention before they were read, per shard: %s",
            report.data_loss,
        )
    if not report.balanced:
        raise UnbalancedRun(f"bucket counts do not add up to records read: {summary}")
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    def ms(key: str) -> str:
        value = summary[key]
        return "n/a" if value is None else f"{value:.0f} ms"

    return "\n".join(
        [
            f"### Enrichment run ({summary['mode']})",
            "",
            "| records read | matched | unmatched | unknown | dead letter | balanced |",
            "|---:|---:|---:|---:|---:|:---:|",
            f"| {summary['records_read']:,} | {summary['matched']:,} | {summary['unmatched']:,} "
            f"| {summary['unknown']:,} | {summary['dead_letter']:,} | "
            f"{'yes' if summary['balanced'] else '**NO**'} |",
            "",
            f"{summary['micro_batches']} micro-batches, {summary['records_per_s']:,.0f} records/s "
            f"while processing, {summary['elapsed_s']:.1f} s in all.",
            "",
            f"Latency from arrival in the input stream to written: p50 {ms('latency_p50_ms')}, "
            f"p95 {ms('latency_p95_ms')}, p99 {ms('latency_p99_ms')}, max {ms('latency_max_ms')}.",
        ]
        + (
            [
                "",
                f"**Data loss:** {summary['data_loss_gaps']} stretch(es) of records were trimmed "
                "by the stream's retention before they were read (failOnDataLoss=false).",
            ]
            if summary.get("data_loss_gaps")
            else []
        )
    )
