"""A local Kinesis endpoint that behaves as the AWS Kinesis documentation says.

moto and kinesis-mock never throttle, never return empty pages behind the tip, never trim
records and never let a closed shard vanish; real Kinesis does all of these. Put an
:class:`AwsKinesisProxy` in front of either engine and boto3 (JSON 1.1) sees AWS's
behaviour, each part switchable in :class:`AwsSemantics` (``None`` or ``0`` turns it off).
It is a :class:`~streamenrich.testing.proxy.KinesisProxy`: the counters and the fault
injection work as there.

>>> clock = ManualClock()                                           # doctest: +SKIP
>>> with AwsKinesisProxy(moto_url, AwsSemantics.real(), clock=clock) as proxy:
...     client = kinesis_client(endpoint_url=proxy.endpoint_url)
...     clock.advance(1.0)  # refills every per-shard budget by one second's worth

Rate limits, iterator ages and retention are judged on ``clock`` (seconds since the epoch;
:func:`time.time` by default), so a test decides exactly which calls are throttled.

AWS pages followed (Kinesis Data Streams API Reference and Developer Guide):

- GetRecords: https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetRecords.html
- GetShardIterator:
  https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetShardIterator.html
- PutRecords: https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
- ListShards: https://docs.aws.amazon.com/kinesis/latest/APIReference/API_ListShards.html
- "Quotas and limits":
  https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html
- "Changing the data retention period":
  https://docs.aws.amazon.com/streams/latest/dev/kinesis-extended-retention.html
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from streamenrich.testing.aws_state import (
    IteratorState,
    KinesisState,
    ShardKey,
    encoded_size,
    stream_of,
)
from streamenrich.testing.proxy import JSON_CONTENT_TYPE, Answer, KinesisProxy, _error_reply
from streamenrich.testing.token_bucket import ManualClock

MIB = 1024 * 1024
THROTTLED = "ProvisionedThroughputExceededException"
ACCOUNT = "123456789012"


@dataclasses.dataclass(frozen=True)
class AwsSemantics:
    """Which AWS behaviours the proxy adds; the defaults are AWS's own (see each field).

    Rates are per shard and multiplied by ``rate_scale`` (0.01 makes every limit a hundred
    times tighter). ``None`` (or ``0`` for counts) switches a behaviour off.
    """

    # "Quotas and limits": GetRecords 5 transactions/s per shard, shared by every consumer.
    get_records_per_s: float | None = 5.0
    # "Quotas and limits": reads 2 MB/s per shard (bytes of Data returned).
    read_bytes_per_s: float | None = 2_000_000
    # GetRecords: "If a call returns 10 MiB of data, subsequent calls made within the next
    # 5 seconds throw ProvisionedThroughputExceededException." Applied after any page larger
    # than one second's read budget.
    read_penalty_s: float | None = 5.0
    # "Quotas and limits": GetShardIterator 5 transactions/s per open shard.
    get_shard_iterator_per_s: float | None = 5.0
    # "Quotas and limits" / PutRecords: 1 MB/s and 1,000 records/s written per shard.
    write_bytes_per_s: float | None = 1_000_000
    write_records_per_s: float | None = 1_000
    rate_scale: float = 1.0
    # GetRecords: Limit at most 10,000 (else InvalidArgumentException); a page holds at most
    # 10,000 records and 10 MiB.
    max_get_records_limit: int | None = 10_000
    page_max_records: int | None = 10_000
    page_max_bytes: int | None = 10 * MIB
    # PutRecords: at most 500 records and 5 MiB per call; a record (data plus partition key)
    # at most 1 MiB.
    put_max_records: int | None = 500
    put_max_bytes: int | None = 5 * MIB
    record_max_bytes: int | None = MIB
    # GetRecords: "GetRecords might return an empty Records list with MillisBehindLatest
    # greater than 0 ... keep calling with NextShardIterator." A fresh iterator chain behind
    # the tip returns this many empty pages before its first records; after each data page
    # while still behind, ``empty_pages_between`` more.
    empty_pages_behind: int = 12
    empty_pages_between: int = 0
    # GetShardIterator: "A shard iterator expires 5 minutes after it is returned."
    iterator_ttl_s: float | None = 300.0
    # "Changing the data retention period": records are gone after the retention period
    # (24 hours by default); ``None`` keeps them until :meth:`AwsKinesisProxy.trim`.
    retention_s: float | None = 24 * 3600.0
    # ListShards: closed shards past retention are no longer listed, and calls on them get
    # ResourceNotFoundException.
    expire_closed_shards: bool = True

    @classmethod
    def real(cls) -> AwsSemantics:
        """Every behaviour on, with AWS's values."""
        return cls()

    @classmethod
    def off(cls) -> AwsSemantics:
        """Every behaviour off: the proxy then only counts, like ``KinesisProxy``."""
        return cls(
            get_records_per_s=None,
            read_bytes_per_s=None,
            read_penalty_s=None,
            get_shard_iterator_per_s=None,
            write_bytes_per_s=None,
            write_records_per_s=None,
            max_get_records_limit=None,
            page_max_records=None,
            page_max_bytes=None,
            put_max_records=None,
            put_max_bytes=None,
            record_max_bytes=None,
            empty_pages_behind=0,
            empty_pages_between=0,
            iterator_ttl_s=None,
            retention_s=None,
            expire_closed_shards=False,
        )

    def rate(self, per_s: float | None) -> float | None:
        return None if per_s is None else per_s * self.rate_scale


class AwsKinesisProxy(KinesisProxy):
    """A :class:`KinesisProxy` that also answers as AWS Kinesis would (:class:`AwsSemantics`).

    It hands out its own shard iterators (short tokens; their state stays here), so it can
    expire them, add empty pages and continue a truncated page after its last record.
    Extra counters: ``empty_pages`` served, ``trimmed_skipped`` (records behind the trim
    horizon that a read stepped over, per shard in ``trimmed_by_shard``).
    """

    def __init__(
        self,
        upstream_url: str,
        semantics: AwsSemantics | None = None,
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 20131202,
    ) -> None:
        super().__init__(upstream_url, seed=seed)
        self.semantics = semantics or AwsSemantics.real()
        self.clock = clock
        self._state = KinesisState(self.semantics, upstream_url)

    def __enter__(self) -> AwsKinesisProxy:
        self.start()
        return self

    # -- test controls -----------------------------------------------------------------------

    def trim(self, stream: str, shard_id: str, before_sequence_number: str | None = None) -> None:
        """Make the records of a shard before ``before_sequence_number`` gone (all of the
        records written so far when ``None``), as retention would. A closed shard whose
        records are all gone leaves ListShards when ``expire_closed_shards`` is on."""
        self._state.trim(self._lock, ShardKey(stream, shard_id), before_sequence_number)

    def expire_shard(self, stream: str, shard_id: str) -> None:
        """Make a shard leave ListShards/DescribeStream; calls on it then get
        ResourceNotFoundException (a closed shard past retention)."""
        with self._lock:
            self._state.expired.add(ShardKey(stream, shard_id))

    @property
    def empty_pages(self) -> int:
        with self._lock:
            return self._state.empty_pages

    @property
    def trimmed_skipped(self) -> int:
        with self._lock:
            return sum(self._state.trimmed.values())

    @property
    def trimmed_by_shard(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return {(k.stream, k.shard): n for k, n in self._state.trimmed.items()}

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(
        self,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        body: bytes,
    ) -> Answer:
        now = self.clock()
        if operation == "GetRecords":
            return self._get_records(now, method, path, headers, request)
        if operation == "GetShardIterator":
            return self._get_shard_iterator(now, method, path, headers, request, body)
        if operation in ("PutRecords", "PutRecord"):
            return self._put(now, operation, method, path, headers, request, body)
        if operation in ("SplitShard", "MergeShards", "UpdateShardCount"):
            self._state.forget_shard_map(stream_of(request))
        answer = super()._dispatch(operation, method, path, headers, request, body)
        if operation in ("ListShards", "DescribeStream") and answer.status == 200:
            return self._without_expired_shards(now, operation, request, answer)
        return answer

    # GetShardIterator (API Reference): per-shard rate; the proxy's own expiring token.
    def _get_shard_iterator(
        self,
        now: float,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        body: bytes,
    ) -> Answer:
        key = ShardKey(stream_of(request), request.get("ShardId", ""))
        with self._lock:
            if key in self._state.expired:
                return _not_found(key)
            if not self._state.take_iterator_call(key, now):
                return _throttled(key)
        status, reply_headers, reply = self._forward(method, path, headers, body)
        if status != 200:
            return Answer(status, reply_headers, reply)
        upstream = json.loads(reply)["ShardIterator"]
        with self._lock:
            token = self._state.issue(key, now, upstream=upstream, after=None, fresh=True)
        return _json_answer({"ShardIterator": token})

    # GetRecords (API Reference): Limit, page size, empty pages, expiry, trim, rates.
    def _get_records(
        self,
        now: float,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
    ) -> Answer:
        sem = self.semantics
        limit = request.get("Limit")
        most = sem.max_get_records_limit
        if most is not None and limit is not None and int(limit) > most:
            return _refused(
                "InvalidArgumentException",
                f"Limit {limit} is greater than {sem.max_get_records_limit}",
            )
        with self._lock:
            found = self._state.lookup(request.get("ShardIterator", ""), now)
            if isinstance(found, str):
                code = found
                return _refused(code, _iterator_message(code, sem.iterator_ttl_s))
            it = found
            if it.key in self._state.expired:
                return _not_found(it.key)
            if not self._state.take_read_call(it.key, now):
                return _throttled(it.key)
        upstream = it.upstream or self._state.upstream_iterator_after(it.key, it.after or "")
        if it.empty_left > 0:
            return self._maybe_empty_page(now, method, path, headers, it, upstream)
        page_limit = min(int(limit or 10_000), sem.page_max_records or 10_000)
        forwarded = {"ShardIterator": upstream, "Limit": page_limit}
        status, reply_headers, reply = self._forward(
            method, path, headers, json.dumps(forwarded).encode()
        )
        if status != 200:
            return Answer(status, reply_headers, reply)
        page = json.loads(reply)
        upstream_records: list[dict[str, Any]] = page.get("Records", [])
        with self._lock:
            kept, truncated = self._state.cut_page(it.key, upstream_records, now)
            returned = sum(encoded_size(r["Data"]) for r in kept)
            self._state.spend_read(it.key, returned, now)
            behind = truncated or int(page.get("MillisBehindLatest", 0)) > 0
            behind = behind or len(upstream_records) >= page_limit
            next_token: str | None = None
            if truncated:
                next_token = self._state.issue(
                    it.key, now, upstream=None, after=kept[-1]["SequenceNumber"], fresh=False
                )
            elif page.get("NextShardIterator"):
                next_token = self._state.issue(
                    it.key, now, upstream=page["NextShardIterator"], after=None, fresh=False
                )
            if next_token is not None and kept and behind:
                self._state.iterators[next_token].empty_left = sem.empty_pages_between
        out: dict[str, Any] = {**page, "Records": kept}
        out.pop("NextShardIterator", None)
        if next_token is not None:
            out["NextShardIterator"] = next_token
        if truncated:
            out["MillisBehindLatest"] = max(1, int(page.get("MillisBehindLatest", 0)))
        return _json_answer(out, records=len(kept))

    def _maybe_empty_page(
        self,
        now: float,
        method: str,
        path: str,
        headers: dict[str, str],
        it: IteratorState,
        upstream: str,
    ) -> Answer:
        """An empty page with MillisBehindLatest > 0 when records wait past the iterator; at
        the tip (or a closed shard's end) upstream's own empty page."""
        probe = {"ShardIterator": upstream, "Limit": 1}
        status, reply_headers, reply = self._forward(
            method, path, headers, json.dumps(probe).encode()
        )
        if status != 200:
            return Answer(status, reply_headers, reply)
        page = json.loads(reply)
        records = page.get("Records", [])
        with self._lock:
            if records:
                self._state.empty_pages += 1
                token = self._state.issue(it.key, now, upstream=upstream, after=None, fresh=False)
                self._state.iterators[token].empty_left = it.empty_left - 1
                behind_ms = (now - float(records[0]["ApproximateArrivalTimestamp"])) * 1000
                millis = max(1, int(page.get("MillisBehindLatest", 0)), int(behind_ms))
                out = {"Records": [], "NextShardIterator": token, "MillisBehindLatest": millis}
                return _json_answer(out)
            next_token = None
            if page.get("NextShardIterator"):
                next_token = self._state.issue(
                    it.key, now, upstream=page["NextShardIterator"], after=None, fresh=False
                )
                self._state.iterators[next_token].empty_left = it.empty_left
        page.pop("NextShardIterator", None)
        if next_token is not None:
            page["NextShardIterator"] = next_token
        return _json_answer(page)

    # PutRecords / PutRecord (API Reference) and "Quotas and limits": call shape, per-shard
    # write rates; PutRecords fails single entries, PutRecord the whole call.
    def _put(
        self,
        now: float,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        body: bytes,
    ) -> Answer:
        stream = stream_of(request)
        entries = request.get("Records", []) if operation == "PutRecords" else [request]
        problem = self._shape_problem(operation, entries)
        if problem is not None:
            return _refused(*problem)
        refused: dict[int, tuple[str, str]] = {}
        if self._state.writes_limited:
            shards = self._shards_of(stream, entries)
            with self._lock:
                for index, entry in enumerate(entries):
                    key = ShardKey(stream, shards[index])
                    size = encoded_size(entry["Data"]) + len(entry["PartitionKey"].encode())
                    if not self._state.take_write(key, size, now):
                        refused[index] = (THROTTLED, _rate_message(key))
        if operation == "PutRecord":
            if refused:
                return _refused(*refused[0])
            status, reply_headers, reply = self._forward(method, path, headers, body)
            if status == 200:
                with self._lock:
                    self._state.note_arrivals(stream, [json.loads(reply)], now)
            return Answer(status, reply_headers, reply)
        status, reply_headers, reply = self._put_records(
            method, path, headers, request, refused=refused
        )
        if status == 200:
            results = json.loads(reply).get("Records", [])
            with self._lock:
                self._state.note_arrivals(stream, results, now)
        return Answer(status, reply_headers, reply, len(entries))

    def _shards_of(self, stream: str, entries: list[dict[str, Any]]) -> list[str]:
        """The shard each entry goes to: its hash key within an open shard's range."""
        hash_keys = [_hash_key(entry) for entry in entries]
        shard_map = self._state.shard_map(stream)
        shards = [shard_map.shard_for(h) for h in hash_keys]
        if None in shards:  # resharded since the map was read: read it again, once
            self._state.forget_shard_map(stream)
            shard_map = self._state.shard_map(stream)
            shards = [shard_map.shard_for(h) for h in hash_keys]
        return [shard or "unknown" for shard in shards]

    def _shape_problem(
        self, operation: str, entries: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        sem = self.semantics
        most = sem.put_max_records
        if operation == "PutRecords" and most is not None and len(entries) > most:
            return (
                "ValidationException",
                "1 validation error detected: Value at 'records' failed to satisfy "
                f"constraint: Member must have length less than or equal to {most}",
            )
        total = 0
        for index, entry in enumerate(entries):
            size = encoded_size(entry["Data"]) + len(entry["PartitionKey"].encode())
            total += size
            if sem.record_max_bytes is not None and size > sem.record_max_bytes:
                return (
                    "InvalidArgumentException",
                    f"Record {index} is {size} bytes (data plus partition key), more than "
                    f"the {sem.record_max_bytes} bytes a record may have",
                )
        if sem.put_max_bytes is not None and total > sem.put_max_bytes:
            return (
                "InvalidArgumentException",
                f"Records size {total} exceeds the {sem.put_max_bytes} bytes limit of a request",
            )
        return None

    # ListShards / DescribeStream: closed shards past retention are not listed.
    def _without_expired_shards(
        self, now: float, operation: str, request: dict[str, Any], answer: Answer
    ) -> Answer:
        reply = json.loads(answer.body)
        holder = reply if operation == "ListShards" else reply.get("StreamDescription", {})
        with self._lock:
            stream = self._state.stream_for_listing(request, reply)
            shards = holder.get("Shards", [])
            holder["Shards"] = self._state.listed(stream, shards, now)
        return _json_answer(reply)


def _hash_key(entry: dict[str, Any]) -> int:
    # PutRecords: "An MD5 hash function is used to map partition keys to 128-bit integer
    # values"; ExplicitHashKey overrides it.
    explicit = entry.get("ExplicitHashKey")
    if explicit:
        return int(explicit)
    return int.from_bytes(hashlib.md5(entry["PartitionKey"].encode()).digest(), "big")


def _json_answer(payload: dict[str, Any], records: int = 0) -> Answer:
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    return Answer(200, headers, json.dumps(payload).encode(), records)


def _refused(code: str, message: str) -> Answer:
    status, headers, body = _error_reply(400, code, message)
    return Answer(status, headers, body, 0, code)


def _throttled(key: ShardKey) -> Answer:
    return _refused(THROTTLED, _rate_message(key))


def _not_found(key: ShardKey) -> Answer:
    return _refused(
        "ResourceNotFoundException",
        f"Shard {key.shard} in stream {key.stream} under account {ACCOUNT} does not exist",
    )


def _rate_message(key: ShardKey) -> str:
    return f"Rate exceeded for shard {key.shard} in stream {key.stream} under account {ACCOUNT}."


def _iterator_message(code: str, ttl_s: float | None) -> str:
    if code == "ExpiredIteratorException":
        return f"Iterator expired: it is older than the tolerated {ttl_s} s"
    return "Invalid ShardIterator: not one this endpoint handed out"


__all__ = ["AwsKinesisProxy", "AwsSemantics", "ManualClock"]
