"""Driver program for ``test_crash_restart.py``: the enrichment job in a process of its own.

The test SIGKILLs this process's whole group (the Python driver, the driver JVM and the
Python workers) at chosen moments and starts it again on the same checkpoint and metadata
folders, so each start resumes where the last one stopped.

    python -m tests.crash_restart_job --endpoint URL --input IN --output OUT \
        --dead-letter DL --registry people.parquet --checkpoint CP --metadata MD \
        --work W --events events.jsonl --mode continuous --run-seconds 600

``--events`` gets one JSON line per step, written as it happens (the test reads it to time
its kills, and keeps it as evidence): ``session`` (Spark is up), ``registry_ready``,
``job_ready`` (the query starts next), ``batch_start`` (the
micro-batch's ``foreachBatch`` was entered: its read and publish run next), ``batch_done``
(the batch was read, published and counted; Spark commits it after this), ``run_done``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import IO, Any

import streamenrich
from streamenrich.delivery import DeliveryStats
from streamenrich.enrich import BUCKETS, RuleSet
from streamenrich.enrich.lookup import RegistryIndex
from streamenrich.pipeline import EnrichmentJob, StreamNames
from streamenrich.spark_session import build_spark

RULES = Path(__file__).resolve().parent.parent / "reference_data" / "rules.yaml"


class EventLog:
    """Appends JSON lines, flushed at once: a SIGKILL keeps every line written before it."""

    def __init__(self, path: Path) -> None:
        self._handle: IO[str] = path.open("a", encoding="utf-8")

    def write(self, step: str, **fields: Any) -> None:
        line = {"step": step, "pid": os.getpid(), "t": round(time.time(), 3), **fields}
        self._handle.write(json.dumps(line, sort_keys=True) + "\n")
        self._handle.flush()


class RecordedFrame:
    """A micro-batch's frame that keeps what its ``collect()`` returned (the tasks' counts)."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame
        self.rows: list[Any] | None = None

    def collect(self) -> list[Any]:
        self.rows = self._frame.collect()
        return self.rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._frame, name)


class LoggedEnrichmentJob(EnrichmentJob):
    """The pipeline's job, unchanged, telling the event log where each micro-batch is."""

    def __init__(self, *args: Any, events: EventLog, linger_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events = events
        self.linger_s = linger_s

    def process_batch(self, frame: Any, batch_id: int) -> None:
        self.events.write("batch_start", batch=batch_id)
        recorded = RecordedFrame(frame)
        super().process_batch(recorded, batch_id)
        # The buckets as the batch's tasks counted them (the job's report is returned only
        # at the end of a run, which a killed run never reaches).
        if recorded.rows is None:
            raise RuntimeError("process_batch did not collect the batch's statistics rows")
        stats = DeliveryStats.from_rows([(r.kind, r.key, r.n) for r in recorded.rows])
        counts = {name: stats.counts.get(name, 0) for name in BUCKETS}
        self.events.write("batch_done", batch=batch_id, counts=counts)
        # A batch that takes longer after its publish: Spark commits it only on return, so a
        # kill in this window makes the next start replay the whole batch.
        time.sleep(self.linger_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("endpoint", "input", "output", "dead-letter", "registry"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("checkpoint", "metadata", "work", "events"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--mode", choices=("continuous", "available_now"), required=True)
    parser.add_argument("--run-seconds", type=float, default=600.0)
    parser.add_argument("--max-records-per-shard", type=int, default=200)
    parser.add_argument("--linger-s", type=float, default=0.0, help="sleep after each batch")
    args = parser.parse_args()

    events = EventLog(args.events)
    spark = build_spark("local[2]", "streamenrich-crash-restart", {"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("WARN")
    events.write("session", streamenrich=str(Path(streamenrich.__file__).parent))
    args.work.mkdir(parents=True, exist_ok=True)
    # The generated registry is valid: read as it is, without load_registry's checking pass
    # (a few Spark jobs less on every restart).
    people = RegistryIndex.build(spark, spark.read.parquet(args.registry), args.work)
    events.write("registry_ready")
    job = LoggedEnrichmentJob(
        spark,
        StreamNames(input=args.input, output=args.output, dead_letter=args.dead_letter),
        people,
        RuleSet.from_file(RULES),
        checkpoint_dir=args.checkpoint,
        metadata_path=args.metadata,
        endpoint_url=args.endpoint,
        max_records_per_shard=args.max_records_per_shard,
        events=events,
        linger_s=args.linger_s,
    )
    events.write("job_ready")
    report = job.run(args.mode, run_seconds=args.run_seconds, timeout_s=args.run_seconds)
    events.write("run_done", summary=report.summary())
    spark.stop()


if __name__ == "__main__":
    main()
