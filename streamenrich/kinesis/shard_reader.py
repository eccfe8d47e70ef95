"""Read one shard for one micro-batch: the executor side of the Spark source, in plain boto3.

A read either explores (first attempt of a batch: read from the start position until the
record limit, the time limit, the tip of the shard, the availableNow cut-off or the shard's
end) or replays (the batch was read before: read exactly the recorded range again).

What real Kinesis does, and how a read copes (Kinesis API Reference, GetRecords and
GetShardIterator):

- Empty pages behind the tip: ``GetRecords`` may return no records with
  ``MillisBehindLatest`` > 0 while the iterator is still behind; only calling on with
  ``NextShardIterator`` gets further. An explore hands the iterator it stopped at to the next
  batch (:attr:`ShardBatchRecord.iterator`), so a walk through empty pages that outlasts a
  batch's time limit continues where it stopped instead of starting over.
- Iterators expire 5 minutes after they are issued (``ExpiredIteratorException``): an
  expired one is replaced by a new iterator after the last record delivered.
- Retention trims the oldest records, silently: an iterator at a trimmed sequence number
  starts at the trim horizon. An explore that continues after sequence number ``x`` asks for
  ``AT_SEQUENCE_NUMBER x`` and checks that ``x`` comes back first; if it does not, the
  records after ``x`` may be gone: with ``failOnDataLoss`` the read fails naming the shard
  and the range, without it the read goes on and reports a :class:`ShardGap`.
- Throttling (``ProvisionedThroughputExceededException``: 5 reads/s and 2 MB/s per shard,
  shared by every consumer) is never fatal: the read backs off with jitter; an explore stops
  at its time limit with what it has (the next batch continues), a replay waits it out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from streamenrich.kinesis.client import (
    EXPIRED_ITERATOR_CODE,
    THROTTLING_CODES,
    backoff_delay,
    describe_failure,
    error_code,
    is_future_timestamp,
)
from streamenrich.kinesis.errors import DataLossError, MetadataError, ShardReadError
from streamenrich.kinesis.metadata import ShardBatchRecord, ShardGap
from streamenrich.kinesis.positions import ShardPosition

LOG = logging.getLogger(__name__)

# GetRecords returns at most 10,000 records (or 10 MB) per call.
GET_RECORDS_MAX = 10_000
# An expired iterator (5 minutes after it was issued) is renewed at most this many times per
# read.
MAX_ITERATOR_RENEWALS = 5
# Wait between calls that return nothing while still behind (sparse shard): GetRecords
# allows 5 calls per second per shard, shared by every consumer.
EMPTY_BEHIND_WAIT_S = 0.2
# An iterator handed from one batch to the next is used while younger than this (Kinesis
# expires iterators after 5 minutes; the margin covers clock skew and a slow task start).
ITERATOR_REUSE_MS = 240_000
# A replay, or a read that must finish, waits out throttling; it says so every this many
# throttled calls.
THROTTLE_LOG_EVERY = 10
RESOURCE_NOT_FOUND_CODE = "ResourceNotFoundException"

SOURCE_ARROW_SCHEMA = pa.schema(
    [
        ("data", pa.binary()),
        ("streamName", pa.string()),
        ("shardId", pa.string()),
        ("partitionKey", pa.string()),
        ("sequenceNumber", pa.string()),
        ("approximateArrivalTimestamp", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class ResumeIterator:
    """Where an earlier read of the shard stopped, as a Kinesis iterator.

    ``issued_ms`` is when it was handed out (epoch milliseconds). ``skip`` is a sequence
    number that, if it comes first from this iterator, was delivered already (a check of
    ``AT_SEQUENCE_NUMBER skip`` that was still walking empty pages when the read stopped).
    """

    iterator: str
    issued_ms: int
    skip: str | None = None

    def usable(self, now_ms: int) -> bool:
        return now_ms - self.issued_ms < ITERATOR_REUSE_MS


@dataclass(frozen=True)
class ShardReadPlan:
    """What one task reads. Picklable: built on the driver, run on an executor."""

    stream_name: str
    shard_id: str
    start: ShardPosition
    max_records: int | None
    max_fetch_time_ms: int
    cutoff_ms: int | None
    replay: ShardBatchRecord | None
    resume: ResumeIterator | None = None
    fail_on_data_loss: bool = True


class _StartAhead(Exception):
    """GetShardIterator refused an ``AT_TIMESTAMP`` start ahead of the server's clock."""


class _Throttled(Exception):
    """Throttled past the read's time limit: the read stops here, the next batch goes on."""


class _ShardGone(Exception):
    """The shard is no longer in the stream (ResourceNotFoundException: past retention)."""


def arrival_ms(record: dict[str, Any]) -> int:
    stamp = record.get("ApproximateArrivalTimestamp")
    if isinstance(stamp, datetime):
        return int(stamp.timestamp() * 1000)
    return 0


def before_cutoff(records: list[dict[str, Any]], cutoff_ms: int | None) -> list[dict[str, Any]]:
    """The records up to (not including) the first that arrived after ``cutoff_ms``.

    Arrival stamps are approximate and need not grow with sequence numbers; a read stops at
    the first late record, so what it delivers is always a prefix of the shard.
    """
    if cutoff_ms is None:
        return records
    for index, record in enumerate(records):
        if arrival_ms(record) > cutoff_ms:
            return records[:index]
    return records


class ShardReader:
    """Iterate :meth:`batches`; afterwards :attr:`result` says what was covered."""

    def __init__(
        self,
        client: Any,
        plan: ShardReadPlan,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._plan = plan
        self._sleep = sleep
        self._clock = clock
        self._wall_ms = wall_ms
        self.result: ShardBatchRecord | None = None
        self._fetched = 0
        self._renewed_check: str | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._plan.replay is not None:
            yield from self._replay(self._plan.replay)
        else:
            yield from self._explore()

    # -- first attempt -------------------------------------------------------------------

    def _start(self, last: str | None, deadline: float | None) -> tuple[str, str | None]:
        """A new iterator for the read and the sequence number it must see first, if any.

        After a delivered record: right after it. At the plan's start: a sequence-number
        start is read ``AT`` the record delivered last, to learn whether it is still there.
        """
        if last is not None:
            return self._iterator(ShardPosition.after(last), deadline), None
        start = self._plan.start
        if start.kind == "AFTER_SEQUENCE_NUMBER" and start.sequence_number is not None:
            at = ShardPosition.at(start.sequence_number)
            return self._iterator(at, deadline), start.sequence_number
        return self._iterator(start, deadline), None

    def _explore(self) -> Iterator[pa.RecordBatch]:
        plan = self._plan
        deadline = self._clock() + plan.max_fetch_time_ms / 1000.0
        remaining = plan.max_records
        first: str | None = None
        last: str | None = None
        count = 0
        caught_up = closed = reached_cutoff = False
        gap: ShardGap | None = None
        # The iterator to read next, when it was issued, and a record it may repeat.
        resume = plan.resume if plan.resume and plan.resume.usable(self._wall_ms()) else None
        check: str | None = None
        try:
            if resume is not None:
                iterator, issued, check = resume.iterator, resume.issued_ms, resume.skip
            else:
                iterator, check = self._start(None, deadline)
                issued = self._wall_ms()
        except _StartAhead:
            # The server has nothing at or after the pinned start yet: an empty, caught-up
            # read that leaves the position where it is.
            self.result = self._record(None, None, 0, caught_up=True)
            return
        except _Throttled:
            self.result = self._record(None, None, 0, caught_up=False)
            return
        except _ShardGone:
            self.result = self._gone(None, None, 0)
            return
        next_resume: ResumeIterator | None = None
        while True:
            limit = GET_RECORDS_MAX if remaining is None else min(GET_RECORDS_MAX, remaining)
            if check is not None:
                limit = min(GET_RECORDS_MAX, limit + 1)  # room for the record checked again
            try:
                response, iterator, renewed = self._get_records(iterator, limit, last, deadline)
                if renewed:
                    check = self._renewed_check
            except _Throttled:
                next_resume = ResumeIterator(iterator, issued, check)
                break
            except _ShardGone:
                self.result = self._gone(first, last, count)
                return
            issued = self._wall_ms()
            page = response.get("Records", [])
            self._fetched += len(page)
            next_iterator = response.get("NextShardIterator")
            behind = response.get("MillisBehindLatest", 0)
            records = page
            if check is not None and (records or next_iterator is None or behind == 0):
                if records and records[0]["SequenceNumber"] == check:
                    records = records[1:]
                else:
                    gap = self._data_loss(check, records[0]["SequenceNumber"] if records else None)
                check = None
            kept = before_cutoff(records, plan.cutoff_ms)
            reached_cutoff = len(kept) < len(records)
            if kept:
                first = first or kept[0]["SequenceNumber"]
                last = kept[-1]["SequenceNumber"]
                count += len(kept)
                if remaining is not None:
                    remaining -= len(kept)
                yield self._to_arrow(kept)
            if reached_cutoff:
                # The page's next iterator lies past records this run leaves for the next.
                caught_up = True
                break
            if next_iterator is None:
                caught_up = closed = True
                break
            next_resume = ResumeIterator(next_iterator, issued, check)
            # MillisBehindLatest is a time difference: it is 0 too while records that share
            # the arrival millisecond of the last one returned still wait (one PutRecords
            # burst), so a full page is never taken for the tip.
            if behind == 0 and len(page) < limit:
                caught_up = True
                break
            if (remaining is not None and remaining <= 0) or self._clock() >= deadline:
                break
            if not page:
                self._sleep(EMPTY_BEHIND_WAIT_S)
            iterator = next_iterator
        if closed or reached_cutoff:
            next_resume = None
        self.result = self._record(first, last, count, caught_up, closed, next_resume, gap)

    def _record(
        self,
        first: str | None,
        last: str | None,
        count: int,
        caught_up: bool,
        closed: bool = False,
        resume: ResumeIterator | None = None,
        gap: ShardGap | None = None,
    ) -> ShardBatchRecord:
        return ShardBatchRecord(
            shard_id=self._plan.shard_id,
            first=first,
            last=last,
            count=count,
            caught_up=caught_up,
            closed=closed,
            fetched=self._fetched,
            iterator=resume.iterator if resume else None,
            iterator_ms=resume.issued_ms if resume else None,
            iterator_skip=resume.skip if resume else None,
            gap=gap,
        )

    def _data_loss(
        self, after: str, resumed_at: str | None, records: int | None = None
    ) -> ShardGap:
        """Records after ``after`` are gone: fail, or report them (``failOnDataLoss``)."""
        plan = self._plan
        where = f"stream {plan.stream_name!r} shard {plan.shard_id}"
        until = f"before sequence number {resumed_at}" if resumed_at else "to the shard's end"
        message = (
            f"records of {where} after sequence number {after} and {until} are gone "
            "(trimmed by the stream's retention before they were read)"
        )
        if records is not None:
            message += f": {records} recorded records"
        if plan.fail_on_data_loss:
            raise DataLossError(f"{message}; set failOnDataLoss=false to skip them")
        LOG.warning("data loss: %s; continuing (failOnDataLoss=false)", message)
        return ShardGap(after=after, resumed_at=resumed_at, records=records)

    def _gone(self, first: str | None, last: str | None, count: int) -> ShardBatchRecord:
        """The shard left the stream during the read: what was read, then a closed end."""
        start = self._plan.start
        after = last or start.sequence_number
        gap = self._data_loss(after or str(start), None)
        return self._record(first, last, count, caught_up=True, closed=True, gap=gap)

    # -- replay of a recorded batch ------------------------------------------------------

    def _replay(self, recorded: ShardBatchRecord) -> Iterator[pa.RecordBatch]:
        plan = self._plan
        if recorded.count == 0 or recorded.first is None or recorded.last is None:
            self.result = recorded
            return
        target = int(recorded.last)
        remaining = recorded.count
        delivered_last: str | None = None
        checked = False
        try:
            iterator = self._iterator(ShardPosition.at(recorded.first))
        except _ShardGone:
            self._data_loss(recorded.first, None, remaining)
            self.result = recorded
            return
        while remaining > 0:
            try:
                response, iterator, _ = self._get_records(
                    iterator,
                    min(GET_RECORDS_MAX, remaining),
                    delivered_last,
                    None,
                    start=ShardPosition.at(recorded.first),
                )
            except _ShardGone:
                self._data_loss(delivered_last or recorded.first, None, remaining)
                break
            records = response.get("Records", [])
            self._fetched += len(records)
            if records and not checked:
                checked = True
                if records[0]["SequenceNumber"] != recorded.first:
                    self._data_loss(recorded.first, records[0]["SequenceNumber"])
            kept = [r for r in records if int(r["SequenceNumber"]) <= target][:remaining]
            if kept:
                delivered_last = kept[-1]["SequenceNumber"]
                remaining -= len(kept)
                yield self._to_arrow(kept)
                if int(delivered_last) == target:
                    break
            next_iterator = response.get("NextShardIterator")
            if next_iterator is None or (
                not records and response.get("MillisBehindLatest", 0) == 0
            ):
                if not checked:
                    self._data_loss(recorded.first, None, remaining)
                    break
                raise MetadataError(
                    f"replay of {plan.stream_name}/{plan.shard_id} ended before sequence number "
                    f"{recorded.last}: {remaining} recorded records are not in the stream"
                )
            if not records:
                self._sleep(EMPTY_BEHIND_WAIT_S)
            iterator = next_iterator
        if remaining != 0 and plan.fail_on_data_loss:
            raise MetadataError(
                f"replay of {plan.stream_name}/{plan.shard_id} did not match the recorded range "
                f"{recorded.first}..{recorded.last} ({recorded.count} records)"
            )
        self.result = recorded

    # -- boto3 calls ---------------------------------------------------------------------

    def _throttled(self, attempt: int, deadline: float | None, operation: str) -> None:
        """Wait before the next attempt, or raise :class:`_Throttled` past ``deadline``."""
        if deadline is not None and self._clock() >= deadline:
            raise _Throttled
        if attempt and attempt % THROTTLE_LOG_EVERY == 0:
            plan = self._plan
            LOG.warning(
                "%s on stream %r shard %s throttled %d times in a row; backing off",
                operation,
                plan.stream_name,
                plan.shard_id,
                attempt,
            )
        self._sleep(backoff_delay(attempt))

    def _iterator(self, position: ShardPosition, deadline: float | None = None) -> str:
        plan = self._plan
        attempt = 0
        while True:
            try:
                response = self._client.get_shard_iterator(
                    StreamName=plan.stream_name, ShardId=plan.shard_id, **position.iterator_args()
                )
                return str(response["ShardIterator"])
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLING_CODES:
                    self._throttled(attempt, deadline, "GetShardIterator")
                    attempt += 1
                    continue
                if self._shard_gone(exc):
                    raise _ShardGone from exc
                if is_future_timestamp(exc, position.kind):
                    raise _StartAhead from exc
                raise self._fail("GetShardIterator", exc) from exc

    def _get_records(
        self,
        iterator: str,
        limit: int,
        last: str | None,
        deadline: float | None,
        *,
        start: ShardPosition | None = None,
    ) -> tuple[dict[str, Any], str, bool]:
        """One GetRecords call, with throttling backoff and expired-iterator renewal.

        Returns the response, the iterator that produced it, and whether that iterator is a
        renewed one (then :attr:`_renewed_check` is the sequence number it must see first).
        ``start`` is where a replay renews from; an explore renews as :meth:`_start` says.
        """
        attempt = renewals = 0
        while True:
            try:
                response = self._client.get_records(ShardIterator=iterator, Limit=limit)
                return response, iterator, renewals > 0
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLING_CODES:
                    self._throttled(attempt, deadline, "GetRecords")
                    attempt += 1
                    continue
                if self._shard_gone(exc):
                    raise _ShardGone from exc
                if code == EXPIRED_ITERATOR_CODE and renewals < MAX_ITERATOR_RENEWALS:
                    # Resume right after the last record delivered, never from the old start.
                    renewals += 1
                    if start is not None:
                        iterator = self._iterator(ShardPosition.after(last) if last else start)
                    else:
                        iterator, self._renewed_check = self._start(last, deadline)
                    continue
                raise self._fail("GetRecords", exc) from exc

    def _shard_gone(self, exc: ClientError) -> bool:
        """Whether the error says this shard (not the whole stream) no longer exists."""
        if error_code(exc) != RESOURCE_NOT_FOUND_CODE:
            return False
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return self._plan.shard_id in message

    def _fail(self, operation: str, exc: ClientError) -> ShardReadError:
        plan = self._plan
        return ShardReadError(describe_failure(operation, plan.stream_name, exc, plan.shard_id))

    def _to_arrow(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        plan = self._plan
        n = len(records)
        return pa.RecordBatch.from_arrays(
            [
                pa.array([r["Data"] for r in records], pa.binary()),
                pa.array([plan.stream_name] * n, pa.string()),
                pa.array([plan.shard_id] * n, pa.string()),
                pa.array([r["PartitionKey"] for r in records], pa.string()),
                pa.array([r["SequenceNumber"] for r in records], pa.string()),
                pa.array(
                    [r.get("ApproximateArrivalTimestamp") for r in records],
                    pa.timestamp("us", tz="UTC"),
                ),
            ],
            schema=SOURCE_ARROW_SCHEMA,
        )
