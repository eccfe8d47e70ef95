"""Read one shard for one micro-batch: the executor side of the Spark source, in plain boto3.

A read either explores (first attempt of a batch: read from the start position until the
record limit, the time limit, the tip of the shard, the availableNow cut-off or the shard's
end) or replays (the batch was read before: read exactly the recorded range again).
"""

from __future__ import annotations

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
from streamenrich.kinesis.errors import MetadataError, ShardReadError
from streamenrich.kinesis.metadata import ShardBatchRecord
from streamenrich.kinesis.positions import ShardPosition

# GetRecords returns at most 10,000 records (or 10 MB) per call.
GET_RECORDS_MAX = 10_000
# Throttling is retried this many times per call with full-jitter backoff before failing.
MAX_THROTTLE_RETRIES = 12
# An expired iterator (5 minutes idle) is renewed at most this many times per read.
MAX_ITERATOR_RENEWALS = 5
# Wait between calls that return nothing while still behind (sparse shard): GetRecords
# allows 5 calls per second per shard, shared by every consumer.
EMPTY_BEHIND_WAIT_S = 0.2

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
class ShardReadPlan:
    """What one task reads. Picklable: built on the driver, run on an executor."""

    stream_name: str
    shard_id: str
    start: ShardPosition
    max_records: int | None
    max_fetch_time_ms: int
    cutoff_ms: int | None
    replay: ShardBatchRecord | None


class _StartAhead(Exception):
    """GetShardIterator refused an ``AT_TIMESTAMP`` start ahead of the server's clock."""


def arrival_ms(record: dict[str, Any]) -> int:
    stamp = record.get("ApproximateArrivalTimestamp")
    if isinstance(stamp, datetime):
        return int(stamp.timestamp() * 1000)
    return 0


class ShardReader:
    """Iterate :meth:`batches`; afterwards :attr:`result` says what was covered."""

    def __init__(
        self,
        client: Any,
        plan: ShardReadPlan,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._plan = plan
        self._sleep = sleep
        self._clock = clock
        self.result: ShardBatchRecord | None = None
        self._fetched = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._plan.replay is not None:
            yield from self._replay(self._plan.replay)
        else:
            yield from self._explore()

    # -- first attempt -------------------------------------------------------------------

    def _explore(self) -> Iterator[pa.RecordBatch]:
        plan = self._plan
        deadline = self._clock() + plan.max_fetch_time_ms / 1000.0
        remaining = plan.max_records
        first: str | None = None
        last: str | None = None
        count = 0
        caught_up = closed = False
        try:
            iterator = self._iterator(plan.start)
        except _StartAhead:
            # The server has nothing at or after the pinned start yet: an empty, caught-up
            # read that leaves the position where it is.
            self.result = ShardBatchRecord(
                shard_id=plan.shard_id,
                first=None,
                last=None,
                count=0,
                caught_up=True,
                closed=False,
                fetched=self._fetched,
            )
            return
        while True:
            limit = GET_RECORDS_MAX if remaining is None else min(GET_RECORDS_MAX, remaining)
            response, iterator = self._get_records(iterator, limit, plan.start, last)
            records = response.get("Records", [])
            self._fetched += len(records)
            if plan.cutoff_ms is not None:
                kept = [r for r in records if arrival_ms(r) <= plan.cutoff_ms]
                reached_cutoff = len(kept) < len(records)
                records = kept
            else:
                reached_cutoff = False
            if records:
                first = first or records[0]["SequenceNumber"]
                last = records[-1]["SequenceNumber"]
                count += len(records)
                if remaining is not None:
                    remaining -= len(records)
                yield self._to_arrow(records)
            next_iterator = response.get("NextShardIterator")
            if reached_cutoff:
                caught_up = True
                break
            if next_iterator is None:
                caught_up = closed = True
                break
            # MillisBehindLatest is a time difference: it is 0 too while records that share
            # the arrival millisecond of the last one returned still wait (one PutRecords
            # burst), so a full page is never taken for the tip.
            if response.get("MillisBehindLatest", 0) == 0 and len(records) < limit:
                caught_up = True
                break
            if (remaining is not None and remaining <= 0) or self._clock() >= deadline:
                break
            if not records:
                self._sleep(EMPTY_BEHIND_WAIT_S)
            iterator = next_iterator
        self.result = ShardBatchRecord(
            shard_id=plan.shard_id,
            first=first,
            last=last,
            count=count,
            caught_up=caught_up,
            closed=closed,
            fetched=self._fetched,
        )

    # -- replay of a recorded batch ------------------------------------------------------

    def _replay(self, recorded: ShardBatchRecord) -> Iterator[pa.RecordBatch]:
        plan = self._plan
        if recorded.count == 0 or recorded.first is None or recorded.last is None:
            self.result = recorded
            return
        start = ShardPosition.at(recorded.first)
        target = int(recorded.last)
        remaining = recorded.count
        delivered_last: str | None = None
        iterator = self._iterator(start)
        while remaining > 0:
            response, iterator = self._get_records(
                iterator, min(GET_RECORDS_MAX, remaining), start, delivered_last
            )
            records = response.get("Records", [])
            self._fetched += len(records)
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
                raise MetadataError(
                    f"replay of {plan.stream_name}/{plan.shard_id} ended before sequence number "
                    f"{recorded.last}: {remaining} recorded records are no longer in the "
                    "stream (past retention?)"
                )
            iterator = next_iterator
        if delivered_last is None or int(delivered_last) != target or remaining != 0:
            raise MetadataError(
                f"replay of {plan.stream_name}/{plan.shard_id} did not match the recorded range "
                f"{recorded.first}..{recorded.last} ({recorded.count} records)"
            )
        self.result = recorded

    # -- boto3 calls ---------------------------------------------------------------------

    def _iterator(self, position: ShardPosition) -> str:
        plan = self._plan
        for attempt in range(MAX_THROTTLE_RETRIES + 1):
            try:
                response = self._client.get_shard_iterator(
                    StreamName=plan.stream_name, ShardId=plan.shard_id, **position.iterator_args()
                )
                return str(response["ShardIterator"])
            except ClientError as exc:
                if error_code(exc) in THROTTLING_CODES and attempt < MAX_THROTTLE_RETRIES:
                    self._sleep(backoff_delay(attempt))
                    continue
                if is_future_timestamp(exc, position.kind):
                    raise _StartAhead from exc
                raise self._fail("GetShardIterator", exc) from exc
        raise AssertionError("unreachable")

    def _get_records(
        self, iterator: str, limit: int, start: ShardPosition, last: str | None
    ) -> tuple[dict[str, Any], str]:
        """One GetRecords call, with throttling backoff and expired-iterator renewal.

        Returns the response and the iterator that produced it.
        """
        throttled = renewed = 0
        while True:
            try:
                return self._client.get_records(ShardIterator=iterator, Limit=limit), iterator
            except ClientError as exc:
                code = error_code(exc)
                if code in THROTTLING_CODES and throttled < MAX_THROTTLE_RETRIES:
                    self._sleep(backoff_delay(throttled))
                    throttled += 1
                    continue
                if code == EXPIRED_ITERATOR_CODE and renewed < MAX_ITERATOR_RENEWALS:
                    # Resume right after the last record delivered, never from the old start.
                    iterator = self._iterator(ShardPosition.after(last) if last else start)
                    renewed += 1
                    continue
                raise self._fail("GetRecords", exc) from exc

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
