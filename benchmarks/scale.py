"""Job ``scale``: pipeline records/s and driver peak memory by registry size.

One process (one fresh JVM) per registry size, so each peak is that size's own: the registry
is generated (Parquet), loaded with ``load_registry``, and the same number of events (about
20% matching, drawn from that registry's people) is run through ``EnrichmentJob`` in
``available_now`` mode after a warm-up run. Driver memory: see :mod:`benchmarks.driver_memory`.

``python -m benchmarks.scale --sizes full --rows 5000000 --out part.json`` measures one size;
``run.py`` calls it once per size of the profile.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.driver_memory import DriverMemorySampler
from benchmarks.endpoint import LocalEndpoint
from benchmarks.job_cli import ratio, run_job
from benchmarks.pipeline_run import PipelineBench
from benchmarks.sizes import Sizes
from benchmarks.workload import build_workload, preload

SHARDS = 4


def measure(sizes: Sizes, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    rows: int = args.rows
    conf = {"spark.driver.memory": args.driver_memory} if args.driver_memory else {}
    started = time.perf_counter()
    workload, table = build_workload(
        work, rows, sizes.scale_events + sizes.warmup_events, sizes.target_matched_share
    )
    del table  # the registry file is what Spark reads; free the Arrow copy
    prepare_s = time.perf_counter() - started
    warmup_events = workload.events[: sizes.warmup_events]
    events = workload.events[sizes.warmup_events :]
    with LocalEndpoint.start() as endpoint:
        source = endpoint.new_stream("events", SHARDS)
        preload(endpoint.client, source, events)

        bench = PipelineBench(endpoint, work, spark_conf=conf)
        sampler = DriverMemorySampler(bench.spark).start()
        load_s = bench.load_registry(workload.registry_path)
        warmup_s = bench.warm_up(warmup_events, SHARDS)
        job = bench.job(source)
        run = bench.run(job)
        bench.release(job)
        memory = sampler.stop()
        heap_max = int(bench.spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory())
        bench.spark.stop()
    return {
        "registry_rows": rows,
        "events": len(events),
        "shards": SHARDS,
        "records_per_s": round(run.records_per_s, 1),
        "matched_share": ratio(run.report.totals["matched"], run.report.records_read),
        **memory.as_dict(),
        "driver_memory_conf": args.driver_memory or "default",
        "jvm_max_heap_bytes": heap_max,
        "registry_load_s": round(load_s, 3),
        "warmup_s": round(warmup_s, 3),
        "prepare_s": round(prepare_s, 3),
        "pipeline": run.summary(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, required=True, help="registry rows")
    parser.add_argument(
        "--driver-memory", default=None, help="spark.driver.memory (default: Spark's, 1g)"
    )


def main() -> None:
    run_job(__doc__.split("\n\n")[0], measure, add_arguments=add_arguments)


if __name__ == "__main__":
    main()
