"""Job ``latency``: produce to delivered, per matched record, at a steady input rate.

A producer thread publishes events at ``rate_per_s`` for ``duration_s`` with
``publish_events(rate_per_s=...)`` while ``EnrichmentJob`` runs in ``continuous`` mode (default
trigger, 500 ms). After the producer stops and the pipeline has read everything, the output
stream is drained; for each matched record the latency is the output record's
``ApproximateArrivalTimestamp`` minus ``source.arrival_time`` in its JSON (the input record's
arrival time). Both timestamps come from the one moto server's clock.

Before the measured run, a short ``available_now`` run on other events warms the session up
(code generation, the registry cache), as a long-running pipeline would be. With
``--aws-limits`` the producer and the pipeline go through AWS's per-shard limits (see
:mod:`benchmarks.endpoint`); ``aws_limits_traffic`` says what they did.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.endpoint import LocalEndpoint
from benchmarks.job_cli import run_job
from benchmarks.pipeline_run import PipelineBench, PipelineRun, query_prefix
from benchmarks.sizes import Sizes
from benchmarks.workload import build_workload
from streamenrich.publish import PublishReport, publish_events

SHARDS = 4
# How long the query may take to start before the producer begins anyway.
START_TIMEOUT_S = 60.0
# How long the pipeline may take, after the producer stopped, to read what was produced.
DRAIN_TIMEOUT_S = 60.0


def output_latencies_ms(client: Any, stream: str) -> list[float]:
    """Arrival in the output stream minus arrival in the input stream, per output record."""
    from tests.support import drain

    latencies = []
    for record in drain(client, stream):
        produced = datetime.fromisoformat(json.loads(record["Data"])["source"]["arrival_time"])
        delivered: datetime = record["ApproximateArrivalTimestamp"]
        latencies.append((delivered - produced).total_seconds() * 1000.0)
    return latencies


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    array = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p95_ms": round(float(np.percentile(array, 95)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "max_ms": round(float(array.max()), 1),
    }


def measure(sizes: Sizes, work: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    produced_count = sizes.latency_rate_per_s * sizes.latency_duration_s
    workload, _ = build_workload(
        work,
        sizes.throughput_registry_rows,
        produced_count + sizes.warmup_events,
        sizes.target_matched_share,
    )
    warmup_events = workload.events[: sizes.warmup_events]
    events = workload.events[sizes.warmup_events :]
    with LocalEndpoint.start() as endpoint:
        bench = PipelineBench(endpoint, work, workload.registry_path)
        warmup_s = bench.warm_up(warmup_events, SHARDS)

        source = endpoint.new_stream("events", SHARDS)
        job = bench.job(source)
        mark = bench.progress.mark()
        outcome: dict[str, Any] = {}

        def run_pipeline() -> None:
            started = time.perf_counter()
            report = job.run("continuous", run_seconds=3_600)
            outcome["run"] = PipelineRun(report, [], time.perf_counter() - started)

        pipeline = threading.Thread(target=run_pipeline, daemon=True)
        pipeline.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not bench.progress.since(mark, query_prefix(job)):
            time.sleep(0.1)

        published: list[PublishReport] = []
        producer = threading.Thread(
            target=lambda: published.append(
                publish_events(
                    endpoint.new_client(),
                    source,
                    events,
                    rate_per_s=sizes.latency_rate_per_s,
                )
            ),
            daemon=True,
        )
        producer.start()
        producer.join()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and bench.progress.rows_read(
            mark, query_prefix(job)
        ) < len(events):
            time.sleep(0.2)
        for query in bench.spark.streams.active:
            query.stop()
        pipeline.join(60)
        time.sleep(0.5)
        run: PipelineRun = outcome["run"]
        run.progress = bench.progress.since(mark, query_prefix(job))
        latencies = output_latencies_ms(endpoint.client, job.streams.output)
        bench.spark.stop()
        aws_traffic = endpoint.aws_limits_summary()

    report = published[0]
    own = run.report.summary()
    return {
        "aws_limits": aws_traffic is not None,
        "rate_per_s": sizes.latency_rate_per_s,
        "duration_s": sizes.latency_duration_s,
        "shards": SHARDS,
        "produced": report.records,
        "achieved_rate_per_s": round(report.records_per_s, 1),
        "records_read": run.report.records_read,
        "matched": run.report.totals["matched"],
        "measured_records": len(latencies),
        **percentiles(latencies),
        "histogram_ms": histogram(latencies),
        "pipeline_own_latency": {
            key: own[key]
            for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_max_ms")
        },
        "pipeline": run.summary(),
        "warmup_s": round(warmup_s, 3),
        "aws_limits_traffic": aws_traffic,
    }


def histogram(values: list[float], bucket_ms: int = 50) -> dict[str, list[float]]:
    """Counts per ``bucket_ms`` bucket, for the chart (edges are bucket starts)."""
    if not values:
        return {"edges_ms": [], "counts": []}
    top = int(max(values) // bucket_ms + 1) * bucket_ms
    counts, edges = np.histogram(values, bins=np.arange(0, top + bucket_ms, bucket_ms))
    return {"edges_ms": [float(e) for e in edges[:-1]], "counts": [float(c) for c in counts]}


def main() -> None:
    run_job(__doc__.split("\n\n")[0], measure)


if __name__ == "__main__":
    main()
