"""Job ``throughput``: the pipeline against two baselines, each draining the same input stream.

N events (about 20% matching) are preloaded into a 4-shard stream; then, in one process and
one run, each contender reads all of it and writes its matches to an output stream of its own:

- ``raw_copy_rps``: plain boto3, every shard drained in parallel, the matched records (known
  in advance) copied with PutRecords; no enrichment (:mod:`benchmarks.raw_copy`).
  ``raw_copy_utc_rps`` is the same copy with streamenrich's own client, whose parser makes
  arrival timestamps UTC datetimes without dateutil (``kinesis_client``), and
  ``pipeline_vs_raw_utc`` the ratio against it. ``raw_copy_with_dead_letters_rps`` (UTC
  client) also writes the dead-letter share to a second stream, as the pipeline does: the
  same number of records written;
- ``naive_rps``: a first-tutorial consumer (:mod:`benchmarks.naive_enricher`);
- ``pipeline_rps``: ``EnrichmentJob`` in ``available_now`` mode with default settings, in
  steady state: records over the time spent in micro-batches (Spark's ``triggerExecution``,
  see :class:`benchmarks.pipeline_run.PipelineRun`) of a second run over the same stream (new
  checkpoint, new output streams) in the same session, after the first run warmed the JVM
  up (the JIT compiles the generated code of the plan only after many rows: the first
  100,000 records cost about twice the CPU per record of the next). ``pipeline_cold_rps`` is
  the first run's figure, and ``pipeline_total_s`` is from before the Spark session starts to
  the end of that first run (cold: no warm-up).

``cpu`` is the CPU time each contender and the endpoint (moto) used, per 1,000 records
(:mod:`benchmarks.cpu`): on a machine where both share the cores, it bounds what any
consumer can reach, and ``pipeline_vs_raw_cpu_bound`` is the ratio those bounds allow.

``read_amplification`` is records fetched from Kinesis (counted at the wire by a
``KinesisProxy`` between a second pipeline run and moto) over records delivered.

Against AWS's read bound per shard: ``pipeline_rps_per_shard`` (``pipeline_rps`` over the
shards) next to ``read_bound_rps_per_shard``, the most records/s one shard can give its
readers at 2 MB/s and 5 GetRecords/s of at most 10,000 records, for this workload's mean
record size (``record_bytes_mean``, bytes of data). With ``--aws-limits`` every contender
runs through AWS's per-shard limits (see :mod:`benchmarks.endpoint`) and ``aws_limits_traffic``
says what they did to the traffic (throttled calls, empty pages).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.cpu import CpuMeter, cpu_bound_rps
from benchmarks.endpoint import LocalEndpoint
from benchmarks.job_cli import ratio, run_job
from benchmarks.naive_enricher import enrich_stream, people_by_rut
from benchmarks.pipeline_run import PipelineBench
from benchmarks.raw_copy import copy_matched
from benchmarks.sizes import Sizes
from benchmarks.workload import build_workload, expected_buckets, preload, registry_rows
from streamenrich.testing.aws_kinesis import AwsSemantics
from streamenrich.testing.proxy import KinesisProxy


def read_bound_rps_per_shard(record_bytes_mean: float) -> float:
    """Records/s one shard can hand its readers under AWS's limits: 2 MB/s of data, and
    5 GetRecords calls/s of at most 10,000 records each, whichever binds first."""
    aws = AwsSemantics.real()
    assert aws.read_bytes_per_s and aws.get_records_per_s and aws.page_max_records
    by_bytes = aws.read_bytes_per_s / max(record_bytes_mean, 1.0)
    by_calls = aws.get_records_per_s * aws.page_max_records
    return min(by_bytes, by_calls)


def measure(sizes: Sizes, work: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    workload, table = build_workload(
        work, sizes.throughput_registry_rows, sizes.throughput_events, sizes.target_matched_share
    )
    rows = registry_rows(table)
    buckets = expected_buckets(workload.events, rows)
    expected = Counter(buckets)
    selected, dead = (
        frozenset(
            data
            for (_, data), bucket in zip(workload.events, buckets, strict=True)
            if bucket == wanted
        )
        for wanted in ("matched", "dead_letter")
    )
    with LocalEndpoint.start() as endpoint:
        source = endpoint.new_stream("events", sizes.throughput_shards)
        loaded = preload(endpoint.client, source, workload.events)

        meter = CpuMeter(endpoint.server.process.pid)
        raw_target = endpoint.new_stream("raw-copy", sizes.throughput_shards)
        mark = meter.sample()
        raw = copy_matched(endpoint.baseline_client, source, raw_target, selected)
        raw_cpu = meter.since(mark, raw.records_read)
        endpoint.delete_stream(raw_target)
        # The same copy with the pipeline's own client (UTC timestamp parsing).
        raw_utc_target = endpoint.new_stream("raw-copy-utc", sizes.throughput_shards)
        mark = meter.sample()
        raw_utc = copy_matched(endpoint.new_client, source, raw_utc_target, selected)
        raw_utc_cpu = meter.since(mark, raw_utc.records_read)
        endpoint.delete_stream(raw_utc_target)
        # And with the pipeline's writes: the dead-letter share to a stream of its own too.
        raw_all_target = endpoint.new_stream("raw-copy-all", sizes.throughput_shards)
        raw_all_dead = endpoint.new_stream("raw-copy-dead", 1)
        mark = meter.sample()
        raw_all = copy_matched(
            endpoint.new_client, source, raw_all_target, selected, also={raw_all_dead: dead}
        )
        raw_all_cpu = meter.since(mark, raw_all.records_read)
        endpoint.delete_stream(raw_all_target)
        endpoint.delete_stream(raw_all_dead)

        started = time.perf_counter()
        people = people_by_rut(registry_rows(table))
        naive_load_s = time.perf_counter() - started
        naive_target = endpoint.new_stream("naive", sizes.throughput_shards)
        mark = meter.sample()
        naive = enrich_stream(endpoint.baseline_client(), source, naive_target, people)
        naive_cpu = meter.since(mark, naive.records_read)
        endpoint.delete_stream(naive_target)

        started = time.perf_counter()
        bench = PipelineBench(endpoint, work, workload.registry_path)
        job = bench.job(source)
        mark = meter.sample()
        cold = bench.run(job)
        pipeline_cpu = meter.since(mark, cold.report.records_read)
        pipeline_total_s = time.perf_counter() - started
        bench.release(job)
        steady_job = bench.job(source)
        mark = meter.sample()
        steady = bench.run(steady_job)
        steady_cpu = meter.since(mark, steady.report.records_read)
        bench.release(steady_job)

        with KinesisProxy(endpoint.url) as proxy:
            counted_job = bench.job(source, endpoint_url=proxy.endpoint_url)
            counted = bench.run(counted_job)
            fetched, calls = proxy.records_fetched, dict(proxy.calls)
        bench.release(counted_job)
        bench.spark.stop()
        aws_traffic = endpoint.aws_limits_summary()

    events = workload.event_count
    cores = os.cpu_count() or 1
    delivered = counted.report.records_read
    record_bytes_mean = sum(len(data) for _, data in workload.events) / max(events, 1)
    per_shard = steady.records_per_s / sizes.throughput_shards
    bound = read_bound_rps_per_shard(record_bytes_mean)
    return {
        "aws_limits": aws_traffic is not None,
        "events": events,
        "shards": sizes.throughput_shards,
        "registry_rows": workload.registry_rows,
        "unknown_share": round(workload.unknown_share, 4),
        "matched": cold.report.totals["matched"],
        "matched_share": ratio(cold.report.totals["matched"], events),
        "expected_buckets": dict(expected),
        "pipeline_matches_oracle": all(
            run.report.totals == {k: expected[k] for k in run.report.totals}
            for run in (cold, steady)
        ),
        "preload_rps": round(loaded.records_per_s, 1),
        "raw_copy_rps": round(raw.records_per_s, 1),
        "raw_copy_utc_rps": round(raw_utc.records_per_s, 1),
        "raw_copy_with_dead_letters_rps": round(raw_all.records_per_s, 1),
        "naive_rps": round(naive.records_per_s, 1),
        "pipeline_rps": round(steady.records_per_s, 1),
        "pipeline_cold_rps": round(cold.records_per_s, 1),
        "pipeline_total_s": round(pipeline_total_s, 3),
        "pipeline_vs_raw": ratio(steady.records_per_s, raw.records_per_s),
        "pipeline_vs_raw_utc": ratio(steady.records_per_s, raw_utc.records_per_s),
        "pipeline_vs_raw_with_dead_letters": ratio(steady.records_per_s, raw_all.records_per_s),
        "pipeline_vs_naive": ratio(steady.records_per_s, naive.records_per_s),
        "pipeline_cold_vs_raw": ratio(cold.records_per_s, raw.records_per_s),
        "pipeline_cold_vs_naive": ratio(cold.records_per_s, naive.records_per_s),
        "read_amplification": ratio(fetched, delivered),
        "record_bytes_mean": round(record_bytes_mean, 1),
        "pipeline_rps_per_shard": round(per_shard, 1),
        "read_bound_rps_per_shard": round(bound, 1),
        "read_bound_basis": "2 MB/s and 5 GetRecords/s x 10,000 records per shard (AWS)",
        "pipeline_vs_read_bound": ratio(per_shard, bound),
        "aws_limits_traffic": aws_traffic,
        "cpu": {
            "cores": cores,
            "raw_copy": raw_cpu,
            "raw_copy_utc": raw_utc_cpu,
            "raw_copy_with_dead_letters": raw_all_cpu,
            "naive": naive_cpu,
            "pipeline": steady_cpu,
            "pipeline_cold": pipeline_cpu,
            "raw_copy_cpu_bound_rps": cpu_bound_rps(cores, raw_cpu),
            "pipeline_cpu_bound_rps": cpu_bound_rps(cores, steady_cpu),
            "pipeline_cold_cpu_bound_rps": cpu_bound_rps(cores, pipeline_cpu),
            "pipeline_vs_raw_cpu_bound": ratio(
                cpu_bound_rps(cores, steady_cpu) or 0.0, cpu_bound_rps(cores, raw_cpu) or 0.0
            ),
        },
        "raw_copy": {
            "records_read": raw.records_read,
            "records_written": raw.records_written,
            "get_records_calls": raw.get_calls,
            "put_records_calls": raw.put_calls,
            "seconds": round(raw.seconds, 3),
            "threads": sizes.throughput_shards,
        },
        "raw_copy_utc": {
            "records_read": raw_utc.records_read,
            "records_written": raw_utc.records_written,
            "seconds": round(raw_utc.seconds, 3),
        },
        "raw_copy_with_dead_letters": {
            "records_read": raw_all.records_read,
            "records_written": raw_all.records_written,
            "seconds": round(raw_all.seconds, 3),
        },
        "naive": {
            "records_read": naive.records_read,
            "records_written": naive.records_written,
            "seconds": round(naive.seconds, 3),
            "registry_to_dict_s": round(naive_load_s, 3),
        },
        "pipeline": steady.summary(),
        "pipeline_cold": cold.summary(),
        "read_amplification_run": {
            "records_fetched": fetched,
            "records_delivered": delivered,
            "calls": calls,
            "pipeline": counted.summary(),
        },
    }


def main() -> None:
    run_job(__doc__.split("\n\n")[0], measure)


if __name__ == "__main__":
    main()
