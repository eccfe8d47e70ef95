"""Where a micro-batch's time and CPU go: the two probes behind the README's findings.

``phases`` preloads events into a 4-shard stream and drains it with one streaming query per
phase, each with a fresh checkpoint, in one Spark session: ``read`` (the source alone),
``parse`` (``parse_events``), ``classify`` (parse, lookup, rules) and ``full`` (the job's
streaming plan, publishing included), each into a ``noop`` write. For each it prints
records/s and CPU microseconds per record of moto, the JVM, the Python workers and this
driver process (from ``/proc``). Naming a phase twice shows the JIT's warm-up::

    uv run python benchmarks/profiling.py phases --events 100000 read parse full full

``tasks`` runs the job in continuous mode while a producer publishes at ``--rate`` events/s,
with Spark's UI on a free loopback port, and prints the latency percentiles, Spark's
per-phase time per micro-batch, and the duration, run time and CPU time of every task from
the UI's REST API::

    uv run python benchmarks/profiling.py tasks --rate 1000 --seconds 40

``parse`` times :func:`~streamenrich.enrich.events.parse_events` alone on a cached, static
DataFrame of generated records (no endpoint, no streaming) into a ``noop`` write, several
rounds in one session, so the JIT's warm-up shows in the first rounds::

    uv run python benchmarks/profiling.py parse --events 200000 --rounds 6

They print; none writes results. They are diagnostics, not the benchmark (``run.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pipeline_run
from benchmarks.cpu import process_cpu_s
from benchmarks.driver_memory import _descendants
from benchmarks.endpoint import LocalEndpoint
from benchmarks.latency import output_latencies_ms, percentiles
from benchmarks.pipeline_run import PipelineBench, duration_summary, query_prefix
from benchmarks.workload import EVENTS_SEED, REGISTRY_SEED, build_workload, known_ruts, preload

PHASES = ("read", "parse", "classify", "full")


def cpu_split(endpoint_pid: int) -> dict[str, float]:
    """CPU seconds so far of the endpoint, the JVM, the Python workers and this process."""
    endpoint = {endpoint_pid, *_descendants(endpoint_pid)}
    out = {"moto": sum(process_cpu_s(p) for p in endpoint), "jvm": 0.0, "python_workers": 0.0}
    out["driver_python"] = process_cpu_s(os.getpid())
    for pid in _descendants(os.getpid()):
        if pid in endpoint:
            continue
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        out["jvm" if command == "java" else "python_workers"] += process_cpu_s(pid)
    return out


def phase_frame(job: Any, phase: str) -> Any:
    from streamenrich.enrich.events import parse_events
    from streamenrich.enrich.transform import classify

    if phase == "read":
        return job.source()
    if phase == "parse":
        return parse_events(job.source())
    if phase == "classify":
        return classify(job.source(), job.people, job.rules)
    return job.delivered()


def phases(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="profile-"))
    workload, _ = build_workload(work, args.rows, args.events + args.warmup, 0.2)
    conf = {"spark.driver.memory": args.driver_memory, **dict(args.conf)}
    with LocalEndpoint.start() as endpoint:
        bench = PipelineBench(endpoint, work, workload.registry_path, conf)
        bench.warm_up(workload.events[: args.warmup], 4)
        source = endpoint.new_stream("events", 4)
        preload(endpoint.client, source, workload.events[args.warmup :])
        for number, phase in enumerate(args.phases):
            job = bench.job(source)
            before, started = cpu_split(endpoint.server.process.pid), time.perf_counter()
            query = (
                phase_frame(job, phase)
                .writeStream.foreachBatch(
                    lambda frame, _: frame.write.format("noop").mode("overwrite").save()
                )
                .option("checkpointLocation", str(work / f"phase-{number}-{phase}"))
                .trigger(availableNow=True)
                .start()
            )
            query.awaitTermination()
            wall = time.perf_counter() - started
            after = cpu_split(endpoint.server.process.pid)
            per_record = {k: round((after[k] - before[k]) * 1e6 / args.events, 1) for k in after}
            print(
                f"{phase:9s} {wall:6.1f} s {args.events / wall:8.0f} records/s  "
                f"CPU us/record {per_record}",
                flush=True,
            )
            bench.release(job)
        bench.spark.stop()


def parse_static(args: argparse.Namespace) -> None:
    from datetime import UTC

    from streamenrich.enrich.events import parse_events
    from streamenrich.kinesis.source import SOURCE_SCHEMA
    from streamenrich.producer import generate_events
    from streamenrich.reference.generate import generate_registry
    from streamenrich.spark_session import build_spark

    ruts = known_ruts(generate_registry(10_000, REGISTRY_SEED))
    records = generate_events(args.events, ruts, seed=EVENTS_SEED, unknown_share=0.3)
    arrival = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (data, "events", f"shardId-{i % 4:012d}", key, f"{i:056d}", arrival)
        for i, (key, data) in enumerate(records)
    ]
    spark = build_spark(conf={"spark.driver.memory": args.driver_memory, **dict(args.conf)})
    frame = spark.createDataFrame(rows, SOURCE_SCHEMA).repartition(4).cache()
    frame.count()
    for number in range(args.rounds):
        started = time.perf_counter()
        parse_events(frame).write.format("noop").mode("overwrite").save()
        wall = time.perf_counter() - started
        print(f"round {number + 1}: {wall:6.2f} s {args.events / wall:9.0f} records/s", flush=True)
    spark.stop()


def _rest(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path) as response:
        return json.load(response)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def tasks(args: argparse.Namespace) -> None:
    from streamenrich.kinesis.local import free_port
    from streamenrich.publish import publish_events

    work = Path(tempfile.mkdtemp(prefix="profile-"))
    total = args.rate * args.seconds
    workload, _ = build_workload(work, 10_000, total + args.warmup, 0.2)
    port = free_port()
    pipeline_run.SPARK_MASTER = args.master
    conf = {"spark.ui.enabled": "true", "spark.ui.port": str(port)}
    with LocalEndpoint.start() as endpoint:
        bench = PipelineBench(endpoint, work, workload.registry_path, conf)
        bench.warm_up(workload.events[: args.warmup], 4)
        source = endpoint.new_stream("events", 4)
        job = bench.job(source)
        base = (
            f"http://127.0.0.1:{port}/api/v1/applications/{bench.spark.sparkContext.applicationId}"
        )
        mark = bench.progress.mark()
        runner = threading.Thread(target=lambda: job.run("continuous", run_seconds=3_600))
        runner.start()
        while not bench.progress.since(mark, query_prefix(job)):
            time.sleep(0.1)
        earlier = {j["jobId"] for j in _rest(base, "/jobs")}
        publish_events(
            endpoint.new_client(), source, workload.events[args.warmup :], rate_per_s=args.rate
        )
        time.sleep(3)
        for query in bench.spark.streams.active:
            query.stop()
        runner.join(60)
        summary = duration_summary(bench.progress.since(mark, query_prefix(job)))
        batches = max(summary["batches_with_data"], 1)
        print("latency", percentiles(output_latencies_ms(endpoint.client, job.streams.output)))
        print("micro-batches", batches, "records per batch", round(summary["rows"] / batches))
        print(
            "ms per batch", {k: round(v / batches) for k, v in summary["duration_ms_total"].items()}
        )
        stages = {s["stageId"]: s for s in _rest(base, "/stages")}
        done = [
            j
            for j in _rest(base, "/jobs")
            if j["jobId"] not in earlier and j["status"] == "SUCCEEDED"
        ]
        job_ms, rows = [], []
        for spark_job in done:
            job_ms.append(
                1000 * (_epoch(spark_job["completionTime"]) - _epoch(spark_job["submissionTime"]))
            )
            for stage_id in spark_job["stageIds"]:
                stage = stages.get(stage_id)
                if stage is None or stage["status"] != "COMPLETE":
                    continue
                for task in _rest(
                    base, f"/stages/{stage_id}/{stage['attemptId']}/taskList?length=1000"
                ):
                    metrics = task["taskMetrics"]
                    rows.append(
                        (
                            task["duration"],
                            metrics["executorRunTime"],
                            metrics["executorCpuTime"] / 1e6,
                            task.get("schedulerDelay", 0),
                        )
                    )
        print(f"jobs {len(job_ms)}: mean {np.mean(job_ms):.0f} ms, p50 {np.median(job_ms):.0f} ms")
        table = np.array(rows)
        print(f"tasks {len(table)} ({len(table) / max(len(job_ms), 1):.1f} per job), ms:")
        for column, name in enumerate(("duration", "run time", "JVM CPU", "scheduler delay")):
            values = table[:, column]
            print(
                f"  {name:15s} mean {values.mean():5.0f}  p50 {np.median(values):5.0f}  "
                f"max {values.max():5.0f}"
            )
        bench.spark.stop()


def _setting(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    phase_parser = commands.add_parser("phases", help="CPU per record of each phase")
    phase_parser.add_argument("phases", nargs="*", choices=PHASES, default=list(PHASES))
    phase_parser.add_argument("--events", type=int, default=100_000)
    phase_parser.add_argument("--warmup", type=int, default=4_000)
    phase_parser.add_argument("--rows", type=int, default=10_000, help="registry rows")
    phase_parser.add_argument("--driver-memory", default="3g")
    phase_parser.add_argument("--conf", type=_setting, action="append", default=[], help="K=V")
    task_parser = commands.add_parser("tasks", help="micro-batch and task timings at a rate")
    task_parser.add_argument("--rate", type=int, default=1_000)
    task_parser.add_argument("--seconds", type=int, default=40)
    task_parser.add_argument("--warmup", type=int, default=4_000)
    task_parser.add_argument("--master", default="local[*]")
    static_parser = commands.add_parser("parse", help="parse_events alone on a static frame")
    static_parser.add_argument("--events", type=int, default=200_000)
    static_parser.add_argument("--rounds", type=int, default=6)
    static_parser.add_argument("--driver-memory", default="3g")
    static_parser.add_argument("--conf", type=_setting, action="append", default=[], help="K=V")
    args = parser.parse_args()
    {"phases": phases, "tasks": tasks, "parse": parse_static}[args.command](args)


if __name__ == "__main__":
    main()
