"""The ``kinesis`` Spark Structured Streaming source (Python Data Source API, Spark 4.2+).

Offsets. A Spark offset here is ``{"batch": k, "limit": n, "run": id, "shards":
{shardId: position}, "start": position}``: the positions where batch ``k`` starts, not
where it ends (``start`` is where shards that join later begin). The executors read
each shard from its start until a limit and write where they stopped to the metadata store
(:mod:`streamenrich.kinesis.metadata`). The next ``latestOffset`` reads those ends to form
batch ``k+1``'s starts. A replayed batch (a crash between read and commit) finds its ends
already recorded and reads exactly that range again, so replay is deterministic, and no
record is read twice in steady state: the driver never reads ahead, it only probes one
record per shard when every shard was caught up.

Resharding. A shard enters the offset only when every parent still listed has been drained
(``SHARD_END``), which keeps each partition key in order across splits and merges.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError
from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from streamenrich.kinesis.client import (
    EXPIRED_ITERATOR_CODE,
    THROTTLING_CODES,
    Shard,
    call_with_backoff,
    describe_failure,
    error_code,
    is_future_timestamp,
    kinesis_client,
    list_shards,
    shared_client,
)
from streamenrich.kinesis.errors import DataLossError, MetadataError, ShardReadError
from streamenrich.kinesis.metadata import BatchMetadataStore, ShardBatchRecord
from streamenrich.kinesis.options import SourceOptions
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.shard_reader import (
    ResumeIterator,
    ShardReader,
    ShardReadPlan,
    arrival_ms,
)

LOG = logging.getLogger(__name__)

SOURCE_SCHEMA = (
    "data BINARY, streamName STRING, shardId STRING, partitionKey STRING, "
    "sequenceNumber STRING, approximateArrivalTimestamp TIMESTAMP"
)
# Offset value of "limit" meaning no per-shard record cap (ReadAllAvailable, Trigger.Once).
NO_LIMIT = -1
# Batch number of the initial offset: nothing has been read yet.
INITIAL_BATCH = -1
# A probe gives up on a throttled shard after this many attempts and looks again next time.
PROBE_ATTEMPTS = 3


class ShardPartition(InputPartition):
    """The reads of one task in one batch (one plan per shard); pickled to the executor.

    One shard per partition, unless ``maxPartitions`` groups several shards into one task.
    """

    def __init__(
        self, plans: Sequence[ShardReadPlan], options: SourceOptions, run_id: str, batch: int
    ):
        super().__init__(",".join(plan.shard_id for plan in plans))
        self.plans = tuple(plans)
        self.options = options
        self.run_id = run_id
        self.batch = batch


def group_shards(shard_ids: Sequence[str], max_partitions: int | None) -> list[list[str]]:
    """The shards of a batch spread over at most ``max_partitions`` groups, round-robin.

    >>> group_shards(["a", "b", "c", "d", "e"], 2)
    [['a', 'c', 'e'], ['b', 'd']]
    """
    if max_partitions is None or len(shard_ids) <= max_partitions:
        return [[shard_id] for shard_id in shard_ids]
    return [list(shard_ids[k::max_partitions]) for k in range(max_partitions)]


def _read_shard(
    store: BatchMetadataStore, client: Any, batch: int, planned: ShardReadPlan
) -> Iterator[pa.RecordBatch]:
    # Looked up here, not at planning: a retried task, like a restarted query, must re-read
    # exactly what an earlier attempt recorded.
    recorded = store.read(batch, planned.shard_id)
    reader = ShardReader(client, dataclasses.replace(planned, replay=recorded))
    yield from reader.batches()
    assert reader.result is not None
    if recorded is None:
        stored = store.write_once(batch, reader.result)
        if not stored.same_range(reader.result):
            # Another attempt of this task finished first and its range is the batch's: this
            # attempt's output must not be the one Spark keeps.
            raise MetadataError(
                f"batch {batch} of {planned.stream_name}/{planned.shard_id}: another attempt "
                f"recorded {stored.count} records {stored.first}..{stored.last}, this one read "
                f"{reader.result.count} ({reader.result.first}..{reader.result.last}); this "
                "attempt fails so that a retry replays the recorded range"
            )


_DONE = object()


def merged(sources: Sequence[Callable[[], Iterator[Any]]]) -> Iterator[Any]:
    """The items of several iterators, each run in its own thread, in the order they come.

    Each source's own items stay in order. The first error of any source is raised here
    (after the others are told to stop); closing this generator early stops them too.
    """
    items: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=2 * len(sources))
    stop = threading.Event()

    def offer(entry: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(number: int, source: Callable[[], Iterator[Any]]) -> None:
        try:
            for item in source():
                if not offer((number, item)):
                    return
            offer((number, _DONE))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((-1, exc))

    threads = [
        threading.Thread(target=run, args=(n, src), daemon=True, name=f"kinesis-read-{n}")
        for n, src in enumerate(sources)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            number, item = items.get()
            if number < 0:
                raise item
            if item is _DONE:
                running -= 1
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _offset(
    run_id: str,
    batch: int,
    limit: int,
    shards: dict[str, str],
    start: ShardPosition,
    gaps: dict[str, int] | None = None,
) -> dict[str, Any]:
    # Keys sorted: Spark stores the JSON as given and compares offsets by it. "start" is the
    # query's resolved starting position, where shards that join later begin. "gaps" counts,
    # per shard, the stretches of records lost to retention so far (failOnDataLoss=false);
    # it is there only when there are some, and shows in the query's progress.
    offset: dict[str, Any] = {
        "batch": batch,
        "limit": limit,
        "run": run_id,
        "shards": {shard_id: shards[shard_id] for shard_id in sorted(shards)},
        "start": str(start),
    }
    if gaps:
        offset["gaps"] = {shard_id: gaps[shard_id] for shard_id in sorted(gaps)}
    return offset


def admit_new_shards(
    listed: Sequence[Shard], positions: dict[str, str], start: ShardPosition
) -> dict[str, str]:
    """Add the listed shards that may start now; drop drained shards no longer listed.

    A shard may start when each of its parents that is still listed is in ``positions`` at
    ``SHARD_END``. Returns a new mapping; ``positions`` is not changed.
    """
    listed_ids = {s.shard_id for s in listed}
    drained = str(ShardPosition.shard_end())
    updated = {
        shard_id: pos
        for shard_id, pos in positions.items()
        if shard_id in listed_ids or pos != drained
    }
    for shard in listed:
        if shard.shard_id in updated:
            continue
        parents = [p for p in shard.parents if p in listed_ids]
        if all(updated.get(p) == drained for p in parents):
            updated[shard.shard_id] = str(start)
    return updated


class KinesisStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Driver-side planning; :meth:`read` runs on the executors.

    Spark 4.3 calls :meth:`initialOffset` more than once for a new query and always runs a
    batch 0, planned from the second call's result to the first's (or to the first
    ``latestOffset``). The initial offset is therefore made once per reader, and a batch
    that ends at it reads nothing.
    """

    def __init__(self, options: dict[str, str]) -> None:
        # Cheap on purpose: Spark builds this object in several processes.
        self.options = SourceOptions.parse(options)
        self._cutoff_ms: int | None = None
        self._client: Any = None
        self._initial: dict[str, Any] | None = None
        # Where each shard's reads stopped, as iterators: handed from batch to batch (and
        # refreshed by probes) so that no read starts over. Driver memory only.
        self._resume: dict[str, ResumeIterator] = {}
        # (run, batch) of the offsets this reader planned itself.
        self._planned: set[tuple[str, int]] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None  # boto3 clients do not pickle
        state["_resume"] = {}
        state["_planned"] = set()
        return state

    def _kinesis(self) -> Any:
        if self._client is None:
            self._client = kinesis_client(self.options.region, self.options.endpoint_url)
        return self._client

    def _store(self, run_id: str) -> BatchMetadataStore:
        return BatchMetadataStore(self.options.metadata_path, run_id)

    # -- offsets ---------------------------------------------------------------------------

    def initialOffset(self) -> dict[str, Any]:
        if self._initial is not None:
            return self._initial
        start = self.options.starting_position
        if start.kind == "LATEST":
            # Pinned to a time so that every shard, and every replay, means the same point.
            start = ShardPosition.at_timestamp(int(time.time() * 1000))
        listed = list_shards(self._kinesis(), self.options.stream_name)
        shards = admit_new_shards(listed, {}, start)
        run_id = BatchMetadataStore.new_run_id()
        self._initial = _offset(
            run_id, INITIAL_BATCH, self.options.max_records_per_shard, shards, start
        )
        return self._initial

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.options.max_records_per_shard)

    def prepareForTriggerAvailableNow(self) -> None:
        # availableNow reads what arrived up to now; later records wait for the next run.
        self._cutoff_ms = int(time.time() * 1000)

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, Any]:
        run_id: str = start["run"]
        batch: int = start["batch"]
        positions: dict[str, str] = dict(start["shards"])
        gaps: dict[str, int] = dict(start.get("gaps", {}))
        per_shard = self._per_shard_limit(limit)
        # Nothing read yet: as for a caught-up batch, only a probe tells whether there is data.
        all_caught_up = True
        if batch != INITIAL_BATCH:
            records = self._store(run_id).read_batch(batch, self._active(positions))
            # Iterators are taken over only from reads this reader planned: after a restart,
            # reads start from the recorded positions, which checks them against retention.
            mine = (run_id, batch) in self._planned
            for record in records.values():
                self._advance(positions, gaps, record, take_iterator=mine)
            all_caught_up = all(r.caught_up and not r.closed for r in records.values())
        listed = list_shards(self._kinesis(), self.options.stream_name)
        gone = self._vanished(listed, positions)
        for shard_id in gone:
            positions[shard_id] = str(ShardPosition.shard_end())
            gaps[shard_id] = gaps.get(shard_id, 0) + 1
            self._resume.pop(shard_id, None)
        # A shard that joins later starts where the query started (TRIM_HORIZON, or the
        # pinned LATEST / AT_TIMESTAMP time): a child split off before that point holds
        # records the query must not deliver.
        child_start = ShardPosition.parse(start["start"])
        admitted = admit_new_shards(listed, positions, child_start)
        # A new gap makes a batch too (an empty one, when nothing else is new): the gap
        # shows in the offsets, so in the query's progress, when it happens.
        changed = set(admitted) != set(positions) or gaps != start.get("gaps", {})
        if not changed and all_caught_up and not self._probe(admitted):
            return start  # nothing new: no empty micro-batch
        if not changed and not self._active(admitted):
            return start
        return self._plan(_offset(run_id, batch + 1, per_shard, admitted, child_start, gaps))

    def _advance(
        self,
        positions: dict[str, str],
        gaps: dict[str, int],
        record: ShardBatchRecord,
        *,
        take_iterator: bool,
    ) -> None:
        """Move a shard's position past what its read in the last batch covered."""
        shard_id = record.shard_id
        if record.closed:
            positions[shard_id] = str(ShardPosition.shard_end())
        elif record.last is not None:
            positions[shard_id] = str(ShardPosition.after(record.last))
        if record.gap is not None:
            gaps[shard_id] = gaps.get(shard_id, 0) + 1
        held = self._resume.get(shard_id)
        if not take_iterator:
            return
        if record.iterator is None or record.iterator_ms is None or record.closed:
            self._resume.pop(shard_id, None)
        elif held is None or held.issued_ms < record.iterator_ms:
            # A probe since this batch may hold a newer iterator at the same place: keep it.
            self._resume[shard_id] = ResumeIterator(
                record.iterator, record.iterator_ms, record.iterator_skip
            )

    def _vanished(self, listed: Sequence[Shard], positions: dict[str, str]) -> list[str]:
        """Shards still being read that ListShards no longer returns (expired past retention).

        Their unread records are gone: with ``failOnDataLoss`` that fails the query.
        """
        listed_ids = {s.shard_id for s in listed}
        gone = [s for s in self._active(positions) if s not in listed_ids]
        for shard_id in gone:
            message = (
                f"shard {shard_id} of stream {self.options.stream_name!r} left the stream "
                f"(past retention) before it was read to its end; records after "
                f"{positions[shard_id]} are gone"
            )
            if self.options.fail_on_data_loss:
                raise DataLossError(f"{message}; set failOnDataLoss=false to skip them")
            LOG.warning("data loss: %s; continuing (failOnDataLoss=false)", message)
        return gone

    def _plan(self, offset: dict[str, Any]) -> dict[str, Any]:
        """Record that ``offset``'s batch was planned, before Spark logs it."""
        self._store(offset["run"]).mark_planned(offset["batch"])
        self._planned.add((offset["run"], offset["batch"]))
        return offset

    def _per_shard_limit(self, limit: ReadLimit) -> int:
        if isinstance(limit, ReadAllAvailable):
            return NO_LIMIT
        if isinstance(limit, ReadMaxRows):
            return max(1, int(limit.max_rows))
        return self.options.max_records_per_shard

    @staticmethod
    def _active(positions: dict[str, str]) -> list[str]:
        drained = str(ShardPosition.shard_end())
        return sorted(s for s, p in positions.items() if p != drained)

    def _probe(self, positions: dict[str, str]) -> bool:
        """Whether any active shard has a record (or an end) past its position.

        One ``GetRecords`` with ``Limit=1`` per shard, from the iterator where the shard's
        last read or probe stopped when there is one (no ``GetShardIterator`` call); the
        record it sees is read again by the batch, the only read amplification in steady
        state. A probe that finds nothing keeps the iterator it got back, so an idle shard's
        iterator never expires. Without such an iterator, a position after sequence number
        ``x`` is probed ``AT x`` (two records), as a batch reads it: whether ``x`` is still
        there is the batch's to check. Under availableNow a record past the cut-off does not
        count: that run is done. A shard still throttled after a few tries counts as nothing
        new this time.
        """
        for shard_id in self._active(positions):
            position = ShardPosition.parse(positions[shard_id])
            try:
                response, skip = self._probe_shard(shard_id, position)
            except ClientError as exc:
                if is_future_timestamp(exc, position.kind) or is_throttling(exc):
                    continue  # nothing at or after the pinned start yet / look again later
                message = describe_failure("probe", self.options.stream_name, exc, shard_id)
                raise ShardReadError(message) from exc
            next_iterator = response.get("NextShardIterator")
            records = response.get("Records", [])
            behind = response.get("MillisBehindLatest", 0) > 0
            if skip is not None and records:
                if records[0]["SequenceNumber"] != skip:
                    return True  # the position's record is gone: the batch reports it
                records = records[1:]
                skip = None
            if next_iterator is None:
                return True
            if not records and (skip is None or behind):
                # Nothing past the position: the returned iterator is the same place, issued
                # now (or, behind the tip, further along an empty stretch).
                self._resume[shard_id] = ResumeIterator(next_iterator, _now_ms(), skip)
            elif not records:
                return True  # the position's record is gone and nothing follows it
            if records and self._cutoff_ms is not None:
                # availableNow: a record that arrived after the cut-off is for the next run.
                if arrival_ms(records[0]) > self._cutoff_ms:
                    continue
                return True
            if records or behind:
                return True
        return False

    def _probe_shard(
        self, shard_id: str, position: ShardPosition
    ) -> tuple[dict[str, Any], str | None]:
        """One probe read of a shard, and the sequence number it must see first, if any."""
        client = self._kinesis()
        resume = self._resume.get(shard_id)
        if resume is not None and resume.usable(_now_ms()):
            try:
                response = call_with_backoff(
                    functools.partial(
                        client.get_records,
                        ShardIterator=resume.iterator,
                        Limit=1 if resume.skip is None else 2,
                    ),
                    max_attempts=PROBE_ATTEMPTS,
                )
                return dict(response), resume.skip
            except ClientError as exc:
                if error_code(exc) != EXPIRED_ITERATOR_CODE:
                    raise
                del self._resume[shard_id]
        skip = position.sequence_number if position.kind == "AFTER_SEQUENCE_NUMBER" else None
        start = ShardPosition.at(skip) if skip is not None else position
        iterator = call_with_backoff(
            functools.partial(
                client.get_shard_iterator,
                StreamName=self.options.stream_name,
                ShardId=shard_id,
                **start.iterator_args(),
            ),
            max_attempts=PROBE_ATTEMPTS,
        )["ShardIterator"]
        reply: dict[str, Any] = call_with_backoff(
            functools.partial(
                client.get_records, ShardIterator=iterator, Limit=1 if skip is None else 2
            ),
            max_attempts=PROBE_ATTEMPTS,
        )
        return reply, skip

    # -- planning and reading ---------------------------------------------------------------

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> Sequence[InputPartition]:
        if start == end or end["batch"] == INITIAL_BATCH:
            # Spark's batch 0 of a new query may end at the initial offset: nothing planned.
            return []
        run_id: str = end["run"]
        batch: int = end["batch"]
        limit: int = end["limit"]
        positions: dict[str, str] = end["shards"]
        if (run_id, batch) not in self._planned and not self._store(run_id).is_planned(batch):
            # A batch planned before a restart: its reads must be found and repeated exactly.
            raise MetadataError(
                f"batch {batch} of run {run_id} is not under metadataPath "
                f"{self.options.metadata_path!r}: the source's state was moved or deleted "
                "since the batch was planned, so it cannot be replayed exactly. Point "
                "metadataPath at the state this checkpoint was written with"
            )
        plans = {
            shard_id: ShardReadPlan(
                stream_name=self.options.stream_name,
                shard_id=shard_id,
                start=ShardPosition.parse(positions[shard_id]),
                max_records=None if limit == NO_LIMIT else limit,
                max_fetch_time_ms=self.options.max_fetch_time_ms,
                cutoff_ms=self._cutoff_ms,
                replay=None,
                resume=self._resume.get(shard_id),
                fail_on_data_loss=self.options.fail_on_data_loss,
            )
            for shard_id in self._active(positions)
        }
        groups = group_shards(list(plans), self.options.max_partitions)
        return [
            ShardPartition([plans[s] for s in group], self.options, run_id, batch)
            for group in groups
        ]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, ShardPartition)
        opts = partition.options
        store = BatchMetadataStore(opts.metadata_path, partition.run_id)
        client = shared_client(opts.region, opts.endpoint_url)
        reads = [
            functools.partial(_read_shard, store, client, partition.batch, plan)
            for plan in partition.plans
        ]
        # The shards of a grouped partition are read at the same time (their calls wait on
        # the network, not on this process), their batches handed on as they come.
        yield from reads[0]() if len(reads) == 1 else merged(reads)

    def commit(self, end: dict[str, Any]) -> None:
        if end["batch"] != INITIAL_BATCH:
            self._store(end["run"]).purge_before(end["batch"])


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES
