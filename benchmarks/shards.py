"""Job ``shards``: pipeline records/s by the input stream's shard count.

One process and Spark session; after a warm-up run, the same events are preloaded into a
stream of each shard count in turn and run through ``EnrichmentJob`` (``available_now``,
default settings: at most 10,000 records per shard per micro-batch).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.endpoint import LocalEndpoint
from benchmarks.job_cli import run_job
from benchmarks.pipeline_run import PipelineBench
from benchmarks.sizes import Sizes
from benchmarks.workload import build_workload, preload

WARMUP_SHARDS = 2


def measure(sizes: Sizes, work: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    workload, _ = build_workload(
        work,
        sizes.throughput_registry_rows,
        sizes.shards_events + sizes.warmup_events,
        sizes.target_matched_share,
    )
    warmup_events = workload.events[: sizes.warmup_events]
    events = workload.events[sizes.warmup_events :]
    runs: list[dict[str, Any]] = []
    with LocalEndpoint.start() as endpoint:
        bench = PipelineBench(endpoint, work, workload.registry_path)
        warmup_s = bench.warm_up(warmup_events, WARMUP_SHARDS)
        for shards in sizes.shard_counts:
            source = endpoint.new_stream(f"events-{shards}", shards)
            preload(endpoint.client, source, events)
            job = bench.job(source)
            run = bench.run(job)
            bench.release(job)
            endpoint.delete_stream(source)
            runs.append(
                {
                    "shards": shards,
                    "events": len(events),
                    "records_per_s": round(run.records_per_s, 1),
                    "micro_batches": len(run.report.batches),
                    "pipeline": run.summary(),
                }
            )
        bench.spark.stop()
    return {"runs": runs, "warmup_s": round(warmup_s, 3)}


def main() -> None:
    run_job(__doc__.split("\n\n")[0], measure)


if __name__ == "__main__":
    main()
