"""The streaming enrichment job: Kinesis source -> enrich -> output and dead-letter streams.

One Structured Streaming query, one Spark job per micro-batch: each task reads its shards,
parses, looks the RUTs up in the registry held on the executors
(:mod:`streamenrich.enrich.lookup`), scores the rules, publishes its matches to the output
stream and its rejects to the dead-letter stream, and returns its counts
(:mod:`streamenrich.delivery`); ``foreachBatch`` collects them. The four bucket counts must
add up to the records the source delivered, counted by Spark apart from the buckets (the
batch's ``numInputRows``), or the run fails with :class:`AccountingError`: nothing is lost
or duplicated without a loud error.

>>> job = EnrichmentJob(spark, streams, registry, rules, checkpoint_dir="/tmp/cp")
... # doctest: +SKIP
>>> report = job.run("available_now")                                   # doctest: +SKIP
>>> report.totals, report.records_read                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pyspark.errors import StreamingQueryException

from streamenrich.delivery import STATS_SCHEMA, Delivery, DeliveryStats
from streamenrich.enrich import BUCKETS, RuleSet
from streamenrich.enrich.lookup import RegistryIndex
from streamenrich.enrich.transform import classify

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Mode = Literal["available_now", "continuous"]
# Latencies are counted in buckets of this width (the percentiles' resolution).
LATENCY_BUCKET_MS = 10
# How long a continuous run waits, when its time is up, for the batch in flight to finish and
# for Spark to report its count (see EnrichmentJob._settle).
SETTLE_TIMEOUT_S = 60.0


# Spark writes two checkpoint files per micro-batch (offsets, commits), each by writing a
# temporary file and renaming it. Its default manager renames through Hadoop's FileContext,
# whose local file system forks a `readlink` process for each rename without Hadoop's native
# library (which pip's PySpark lacks): 4 forks of the driver JVM per batch, ~130 ms of a
# ~850 ms micro-batch at 1,000 events/s. The FileSystem-based manager renames with
# java.io.File and forks nothing; it is set for local checkpoint folders only.
CHECKPOINT_MANAGER_KEY = "spark.sql.streaming.checkpointFileManagerClass"
LOCAL_CHECKPOINT_MANAGER = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)


def _is_local_path(location: str) -> bool:
    return "://" not in location or location.startswith("file:")


class AccountingError(RuntimeError):
    """The bucket counts of a micro-batch do not add up to the records the source delivered
    (or the source's count of a batch is missing); the message names the batch and both."""


class EnrichmentFailed(RuntimeError):
    """The streaming query stopped with an error (the message carries Spark's)."""


@dataclass(frozen=True)
class StreamNames:
    input: str
    output: str
    dead_letter: str


@dataclass(frozen=True)
class BatchCounts:
    """One micro-batch: ``read`` is the source's count of the records it delivered (Spark's
    ``numInputRows``), ``counts`` the buckets the delivery put them in; checked equal."""

    batch_id: int
    read: int
    counts: dict[str, int]
    seconds: float

    @property
    def classified(self) -> int:
        return sum(self.counts.values())


@dataclass
class EnrichmentReport:
    """What a run did: per-batch counts, totals, throughput and latency percentiles."""

    mode: str
    batches: list[BatchCounts] = field(default_factory=list)
    elapsed_s: float = 0.0
    latency_histogram: Counter[int] = field(default_factory=Counter)
    # Per shard, the stretches of records the source found trimmed before it read them in
    # this run (only with failOnDataLoss=false; otherwise the run fails).
    data_loss: dict[str, int] = field(default_factory=dict)

    @property
    def records_read(self) -> int:
        return sum(b.read for b in self.batches)

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(b.counts[name] for b in self.batches) for name in BUCKETS}

    @property
    def records_classified(self) -> int:
        return sum(b.classified for b in self.batches)

    @property
    def balanced(self) -> bool:
        return all(b.classified == b.read for b in self.batches)

    @property
    def records_per_s(self) -> float:
        busy = sum(b.seconds for b in self.batches)
        return self.records_read / busy if busy > 0 else 0.0

    def latency_ms(self, quantile: float) -> float | None:
        """Arrival in the input stream -> written to the output, at ``quantile`` (0..1)."""
        total = sum(self.latency_histogram.values())
        if total == 0:
            return None
        rank = max(1, math.ceil(quantile * total))
        seen = 0
        for bucket in sorted(self.latency_histogram):
            seen += self.latency_histogram[bucket]
            if seen >= rank:
                return float((bucket + 1) * LATENCY_BUCKET_MS)
        raise AssertionError("unreachable")

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "micro_batches": len(self.batches),
            "records_read": self.records_read,
            "records_classified": self.records_classified,
            **self.totals,
            "balanced": self.balanced,
            "data_loss_gaps": sum(self.data_loss.values()),
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records_per_s, 1),
            "latency_p50_ms": self.latency_ms(0.50),
            "latency_p95_ms": self.latency_ms(0.95),
            "latency_p99_ms": self.latency_ms(0.99),
            "latency_max_ms": self.latency_ms(1.0),
        }


class EnrichmentJob:
    """Builds and runs the query; safe to run several times on one checkpoint."""

    def __init__(
        self,
        spark: SparkSession,
        streams: StreamNames,
        registry: DataFrame | RegistryIndex,
        rules: RuleSet,
        *,
        checkpoint_dir: str | Path,
        metadata_path: str | Path | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_records_per_shard: int = 10_000,
        max_fetch_time_ms: int = 1_000,
        max_partitions: int | None = None,
        fail_on_data_loss: bool = True,
    ) -> None:
        """``fail_on_data_loss``: the source's ``failOnDataLoss`` (records trimmed by retention
        before they were read fail the run; false: they are skipped and the report's
        ``data_loss`` counts the stretches).

        ``max_partitions``: read tasks per micro-batch (the source's ``maxPartitions``);
        default Spark's default parallelism (the cores of the executors), so that a batch
        runs in one wave of tasks however many shards there are. Each task reads its shards
        at the same time (a thread per shard), and every task carries a fixed cost (three
        Python hops, each with its own Arrow stream), so with more shards than cores, fewer
        and larger tasks are faster than several waves: at 1,000 events/s on 4 shards and 2
        cores, a batch took 1.18 s in two waves of 4 tasks, 0.90 s in one wave of 2 (see the
        README's Performance section).
        """
        self.spark = spark
        self.streams = streams
        # The registry is written once, sorted, and held on every executor (not broadcast
        # again in every micro-batch): see :mod:`streamenrich.enrich.lookup`. An index
        # already built (for an earlier job of the same session) is used as it is: its
        # file is already on the executors and in their Python workers' page tables.
        if isinstance(registry, RegistryIndex):
            self.people = registry
        else:
            self.people = RegistryIndex.build(spark, registry)
        self.rules = rules
        self.checkpoint_dir = str(checkpoint_dir)
        self.metadata_path = str(metadata_path or Path(checkpoint_dir) / "kinesis-metadata")
        self._aws = {k: v for k, v in (("endpointUrl", endpoint_url), ("region", region)) if v}
        self._limits = {
            "maxRecordsPerShard": str(max_records_per_shard),
            "maxFetchTimeMs": str(max_fetch_time_ms),
            "maxPartitions": str(max_partitions or spark.sparkContext.defaultParallelism),
            "failOnDataLoss": str(fail_on_data_loss).lower(),
        }
        self._report = EnrichmentReport(mode="")
        self._lock = threading.Lock()
        # Batches delivered whose source count Spark has not reported yet: id -> (counts, s).
        self._unchecked: dict[int, tuple[dict[str, int], float]] = {}
        self._delivering = False
        self._query_name = ""
        self._failure: AccountingError | None = None

    def source(self) -> DataFrame:
        reader = self.spark.readStream.format("kinesis").option("streamName", self.streams.input)
        options = {**self._aws, **self._limits, "metadataPath": self.metadata_path}
        for key, value in options.items():
            reader = reader.option(key, value)
        return reader.load()

    def _write(self, frame: DataFrame, stream: str) -> None:
        writer = frame.write.format("kinesis").option("streamName", stream).mode("append")
        for key, value in self._aws.items():
            writer = writer.option(key, value)
        writer.save()

    def delivery(self) -> Delivery:
        """What publishes and counts each task's rows (a hook for tests)."""
        return Delivery(
            {"matched": self.streams.output, "dead_letter": self.streams.dead_letter},
            region=self._aws.get("region"),
            endpoint_url=self._aws.get("endpointUrl"),
            latency_bucket_ms=LATENCY_BUCKET_MS,
        )

    def delivered(self) -> DataFrame:
        """The streaming plan: read, classify, publish; each task's statistics rows out.

        Built once per run and analysed once: Spark only re-optimises it per micro-batch,
        where building the transform inside ``foreachBatch`` would analyse its few hundred
        expressions again for every batch (about 0.6 s of driver time each). The records'
        ``processed_at`` is the micro-batch's timestamp (``current_timestamp()`` in a
        streaming query; the same again if the batch is replayed).
        """
        classified = classify(self.source(), self.people, self.rules)
        return classified.mapInArrow(self.delivery(), STATS_SCHEMA)

    def process_batch(self, frame: DataFrame, batch_id: int) -> None:
        """One micro-batch in one Spark job: the batch is read from Kinesis, parsed, looked
        up, scored and published in a single pass, and each task's counts are collected
        (:mod:`streamenrich.delivery`).

        The source's own count of a batch (its ``numInputRows``) is known only once Spark has
        finished the batch, so batch N is checked when batch N+1 starts, before anything of
        N+1 is read or published, and the last batch when the query ends
        (:meth:`check_accounts`): a batch whose buckets do not add up to it fails the run.
        """
        self.check_accounts()
        with self._lock:
            self._delivering = True
        try:
            started = time.monotonic()
            rows = frame.collect()
            stats = DeliveryStats.from_rows([(r.kind, r.key, r.n) for r in rows])
            unexpected = set(stats.counts) - set(BUCKETS)
            if unexpected:
                raise self._fail(
                    AccountingError(f"batch {batch_id}: unknown buckets {sorted(unexpected)}")
                )
            counts = {name: stats.counts.get(name, 0) for name in BUCKETS}
            with self._lock:
                self._unchecked[batch_id] = (counts, time.monotonic() - started)
                self._report.latency_histogram.update(stats.latency)
        finally:
            with self._lock:
                self._delivering = False

    def _fail(self, error: AccountingError) -> AccountingError:
        # Raised inside foreachBatch it reaches run() wrapped in Spark's error: kept to be
        # raised there as itself.
        with self._lock:
            self._failure = self._failure or error
        return error

    def _source_counts(self) -> dict[int, int] | None:
        """``numInputRows`` of every batch Spark has reported, by batch id (None: the query is
        not running). Only progress of a batch that ran counts (an idle trigger reports the
        next batch's id with no rows)."""
        for query in self.spark.streams.active:
            if query.name == self._query_name:
                return source_counts(query.recentProgress)
        return None

    def check_accounts(self, progress: list[Any] | None = None, *, final: bool = False) -> None:
        """Check every delivered batch whose source count is known; ``final``: all of them.

        Raises :class:`AccountingError` naming the batch, the source's count and the buckets.
        """
        known = source_counts(progress) if progress is not None else self._source_counts()
        with self._lock:
            pending = sorted(self._unchecked)
        for batch_id in pending:
            read = (known or {}).get(batch_id)
            if read is None:
                if final:
                    raise self._fail(
                        AccountingError(
                            f"batch {batch_id}: no count of the records the source delivered "
                            f"(Spark reported no progress for it); buckets hold "
                            f"{self._unchecked[batch_id][0]}"
                        )
                    )
                continue
            with self._lock:
                counts, seconds = self._unchecked.pop(batch_id)
                self._report.batches.append(BatchCounts(batch_id, read, counts, seconds))
            if sum(counts.values()) != read:
                raise self._fail(
                    AccountingError(
                        f"batch {batch_id}: the source delivered {read} records but the buckets "
                        f"hold {sum(counts.values())} ({counts})"
                    )
                )

    def _settle(self, query: Any, timeout_s: float) -> None:
        """Before a continuous run stops: wait until no batch is being delivered and Spark
        has reported the count of every delivered one, so that stopping between a batch's
        delivery and its progress does not leave it unchecked."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and query.isActive:
            with self._lock:
                busy = self._delivering
            known = source_counts(query.recentProgress)
            with self._lock:
                settled = not busy and all(b in known for b in self._unchecked)
            if settled:
                return
            time.sleep(0.05)

    def run(
        self,
        mode: Mode = "available_now",
        *,
        run_seconds: float = 60.0,
        trigger_interval_ms: int = 500,
        timeout_s: float = 1_800.0,
    ) -> EnrichmentReport:
        """Run the query and return its report; raise :class:`EnrichmentFailed` on error.

        ``available_now`` processes what is in the stream and stops (bounded by
        ``timeout_s``); ``continuous`` runs micro-batches for ``run_seconds`` then stops.
        """
        if mode not in ("available_now", "continuous"):
            raise ValueError(f"mode must be 'available_now' or 'continuous', got {mode!r}")
        self._report = EnrichmentReport(mode=mode)
        self._unchecked, self._failure = {}, None
        self._query_name = f"enrich-{self.streams.input}-{time.time_ns()}"
        writer = (
            self.delivered()
            .writeStream.foreachBatch(self.process_batch)
            .option("checkpointLocation", self.checkpoint_dir)
            .queryName(self._query_name)
        )
        if mode == "available_now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{trigger_interval_ms} milliseconds")
        if _is_local_path(self.checkpoint_dir):
            self.spark.conf.set(CHECKPOINT_MANAGER_KEY, LOCAL_CHECKPOINT_MANAGER)
        started = time.monotonic()
        query = writer.start()
        try:
            bound = timeout_s if mode == "available_now" else run_seconds
            try:
                finished = query.awaitTermination(max(1, math.ceil(bound)))
            except StreamingQueryException:
                finished = True  # failed: the error is raised below
            if mode == "available_now" and not finished:
                raise EnrichmentFailed(f"available_now run did not finish within {timeout_s}s")
            if not finished:
                self._settle(query, SETTLE_TIMEOUT_S)
        finally:
            if query.isActive:
                query.stop()
        self._report.elapsed_s = time.monotonic() - started
        if self._failure is not None:
            raise self._failure
        error = query.exception()
        if error is not None:
            raise EnrichmentFailed(f"enrichment query failed: {error}")
        self.check_accounts(query.recentProgress, final=True)
        self._report.data_loss = data_loss_gaps(query.recentProgress)
        return self._report


def source_counts(progress: list[Any]) -> dict[int, int]:
    """``numInputRows`` by batch id, from a query's progress updates of batches that ran."""
    return {
        int(p.batchId): int(p.numInputRows) for p in progress if "addBatch" in (p.durationMs or {})
    }


def data_loss_gaps(progress: list[Any]) -> dict[str, int]:
    """Per shard, the data-loss gaps the source's offsets gained over these progress updates.

    The source counts them in its offsets (``"gaps"``), cumulatively over the query's life;
    a run's share is the last end offset's count minus the first start offset's.
    """
    if not progress:
        return {}

    def gaps(offset: Any) -> dict[str, int]:
        if not offset:
            return {}
        parsed = json.loads(offset) if isinstance(offset, str) else offset
        if not parsed:  # a new query's first start offset is JSON null
            return {}
        return {str(k): int(v) for k, v in dict(parsed).get("gaps", {}).items()}

    before = gaps(progress[0].sources[0].startOffset) if progress[0].sources else {}
    after = gaps(progress[-1].sources[0].endOffset) if progress[-1].sources else {}
    return {
        shard: n - before.get(shard, 0) for shard, n in after.items() if n > before.get(shard, 0)
    }
