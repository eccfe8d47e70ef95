"""Running the real pipeline (:class:`streamenrich.pipeline.EnrichmentJob`) for a benchmark.

One Spark session per benchmark process, built by the library's ``build_spark`` (``local[*]``)
with the UI off; a query listener keeps Spark's own progress of every micro-batch
(``durationMs`` per phase), which is where the time of a batch goes, and is what records/s
are computed from (see :class:`PipelineRun`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.endpoint import LocalEndpoint
from benchmarks.workload import RULES_PATH, preload
from streamenrich.enrich import RuleSet
from streamenrich.enrich.lookup import RegistryIndex
from streamenrich.pipeline import EnrichmentJob, EnrichmentReport, Mode, StreamNames
from streamenrich.reference import load_registry
from streamenrich.spark_session import build_spark

SPARK_MASTER = "local[*]"
# The UI would listen on 4040+ (not a port we picked); progress comes from the listener.
BENCHMARK_CONF = {"spark.ui.enabled": "false"}
PROGRESS_WAIT_S = 10.0


def start_spark(conf: Mapping[str, str] | None = None) -> Any:
    spark = build_spark(SPARK_MASTER, "streamenrich-benchmark", {**BENCHMARK_CONF, **(conf or {})})
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class ProgressLog:
    """Every micro-batch's ``StreamingQueryProgress``, as plain dicts, for every query."""

    def __init__(self, spark: Any) -> None:
        from pyspark.sql.streaming.listener import StreamingQueryListener

        log = self

        class Listener(StreamingQueryListener):
            def onQueryStarted(self, event: Any) -> None:
                pass

            def onQueryProgress(self, event: Any) -> None:
                log.add(json.loads(event.progress.json))

            def onQueryIdle(self, event: Any) -> None:
                pass

            def onQueryTerminated(self, event: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._progress: list[dict[str, Any]] = []
        spark.streams.addListener(Listener())

    def add(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._progress.append(progress)

    def mark(self) -> int:
        with self._lock:
            return len(self._progress)

    def since(self, mark: int, name_prefix: str) -> list[dict[str, Any]]:
        """The progress reported after ``mark`` by queries whose name starts so."""
        with self._lock:
            return [p for p in self._progress[mark:] if p.get("name", "").startswith(name_prefix)]

    def rows_read(self, mark: int, name_prefix: str) -> int:
        return sum(int(p.get("numInputRows", 0)) for p in self.since(mark, name_prefix))


def duration_summary(progress: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the micro-batches' time went: Spark's ``durationMs`` phases summed over batches."""
    batches = [p for p in progress if p.get("numInputRows", 0) > 0]
    phases: dict[str, int] = {}
    for p in batches:
        for phase, ms in p.get("durationMs", {}).items():
            phases[phase] = phases.get(phase, 0) + int(ms)
    return {
        "batches_with_data": len(batches),
        "rows": sum(int(p["numInputRows"]) for p in batches),
        "duration_ms_total": dict(sorted(phases.items())),
        "rows_per_batch": [int(p["numInputRows"]) for p in batches],
        "trigger_ms_per_batch": [int(p["durationMs"].get("triggerExecution", 0)) for p in batches],
    }


def _with_data(progress: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in progress if p.get("numInputRows", 0) > 0]


@dataclass
class PipelineRun:
    """What one ``EnrichmentJob.run`` did, with Spark's progress of its micro-batches.

    ``records_per_s`` is records over the micro-batches' ``triggerExecution`` time as Spark
    measures it (offsets, planning, the batch, the commit), not the job's own figure, which
    times only its ``foreachBatch`` function: Spark may run part of a batch (with adaptive
    execution, every shuffle stage) before it calls that function, so the job's figure would
    depend on the plan's shape. Both are reported.
    """

    report: EnrichmentReport
    progress: list[dict[str, Any]]
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        batches = _with_data(self.progress)
        busy_ms = sum(int(p["durationMs"].get("triggerExecution", 0)) for p in batches)
        rows = sum(int(p["numInputRows"]) for p in batches)
        return rows * 1000.0 / busy_ms if busy_ms > 0 else 0.0

    def records_per_s_after_first_batch(self) -> float | None:
        batches = _with_data(self.progress)[1:]
        busy_ms = sum(int(p["durationMs"].get("triggerExecution", 0)) for p in batches)
        rows = sum(int(p["numInputRows"]) for p in batches)
        return round(rows * 1000.0 / busy_ms, 1) if busy_ms > 0 else None

    def summary(self) -> dict[str, Any]:
        batches = self.report.batches
        return {
            "records_read": self.report.records_read,
            "totals": self.report.totals,
            "balanced": self.report.balanced,
            "micro_batches": len(batches),
            "wall_s": round(self.wall_s, 3),
            "records_per_s": round(self.records_per_s, 1),
            "records_per_s_after_first_batch": self.records_per_s_after_first_batch(),
            "records_per_s_job_busy": round(self.report.records_per_s, 1),
            "job_busy_s": round(sum(b.seconds for b in batches), 3),
            "job_batch_seconds": [round(b.seconds, 3) for b in batches],
            "spark_progress": duration_summary(self.progress),
        }


def query_prefix(job: EnrichmentJob) -> str:
    """EnrichmentJob names its query ``enrich-<input stream>-<start time>``."""
    return f"enrich-{job.streams.input}-"


class PipelineBench:
    """A Spark session, a registry, and fresh streams and checkpoints for each run."""

    def __init__(
        self,
        endpoint: LocalEndpoint,
        work: Path,
        registry_path: Path | None = None,
        spark_conf: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.work = work
        self.spark = start_spark(spark_conf)
        self.progress = ProgressLog(self.spark)
        self.rules = RuleSet.from_file(RULES_PATH)
        self.registry: Any = None
        self.index: Any = None
        self._runs = 0
        if registry_path is not None:
            self.load_registry(registry_path)

    def load_registry(self, path: Path) -> float:
        """``load_registry`` (one checking pass) and the index build; returns their seconds."""
        started = time.perf_counter()
        self.registry = load_registry(self.spark, path)
        # Built once per session and shared by every job (warm-up and measured runs), as a
        # long-running deployment would: each job building its own would make the measured
        # run the first to touch its file.
        self.index = RegistryIndex.build(self.spark, self.registry, self.work)
        return time.perf_counter() - started

    def job(self, input_stream: str, endpoint_url: str | None = None) -> EnrichmentJob:
        """A job on ``input_stream`` with fresh output streams and checkpoint, default limits."""
        self._runs += 1
        shards = 4
        streams = StreamNames(
            input=input_stream,
            output=self.endpoint.new_stream("enriched", shards),
            dead_letter=self.endpoint.new_stream("dead-letter", 1),
        )
        return EnrichmentJob(
            self.spark,
            streams,
            self.index,
            self.rules,
            checkpoint_dir=self.work / f"checkpoint-{self._runs}",
            endpoint_url=endpoint_url or self.endpoint.url,
        )

    def run(self, job: EnrichmentJob, mode: Mode = "available_now", **kwargs: Any) -> PipelineRun:
        mark = self.progress.mark()
        started = time.perf_counter()
        report = job.run(mode, **kwargs)
        wall = time.perf_counter() - started
        # The listener hears of the last batches asynchronously: wait for all their rows.
        deadline = time.monotonic() + PROGRESS_WAIT_S
        while (
            self.progress.rows_read(mark, query_prefix(job)) < report.records_read
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        return PipelineRun(report, self.progress.since(mark, query_prefix(job)), wall)

    def warm_up(self, events: list[tuple[str, bytes]], shards: int = 4) -> float:
        """An ``available_now`` run over ``events`` on a stream of their own (code generation,
        Python workers, the registry cache); returns its seconds, 0 when there are no events."""
        if not events:
            return 0.0
        stream = self.endpoint.new_stream("warmup", shards)
        preload(self.endpoint.client, stream, events)
        job = self.job(stream)
        run = self.run(job)
        self.release(job)
        self.endpoint.delete_stream(stream)
        return run.wall_s

    def release(self, job: EnrichmentJob) -> None:
        """Delete a run's output streams (moto keeps every record in memory)."""
        self.endpoint.delete_stream(job.streams.output)
        self.endpoint.delete_stream(job.streams.dead_letter)
