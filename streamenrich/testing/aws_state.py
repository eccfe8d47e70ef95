"""The server-side state of :class:`~streamenrich.testing.aws_kinesis.AwsKinesisProxy`.

Per-shard token buckets, the proxy's own shard iterators, trim horizons, arrival times,
closed shards past retention and the hash-key map of each stream. The proxy holds its lock
around every method here except those marked "does I/O", which talk to the upstream server
and take no lock of the proxy's (never hold a lock during upstream I/O).
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from botocore.config import Config

from streamenrich.kinesis.local import LOCAL_CREDENTIALS
from streamenrich.testing.token_bucket import TokenBucket

if TYPE_CHECKING:
    from streamenrich.testing.aws_kinesis import AwsSemantics

TOKEN_ID_CHARS = 16
SHARD_MAP_TTL_S = 1.0  # wall-clock seconds a stream's hash-key map is reused


class ShardKey(NamedTuple):
    stream: str
    shard: str


@dataclass
class IteratorState:
    """What a proxy iterator token stands for: a position in a shard, as AWS's are.

    ``upstream`` is the upstream engine's iterator at that position, or ``None`` when the
    position is "after ``after``" (a truncated page) and one is fetched on first use.
    ``empty_left`` is how many empty pages the chain still returns while behind the tip.
    """

    key: ShardKey
    upstream: str | None
    after: str | None
    issued: float
    empty_left: int


@dataclass
class ShardMap:
    """The open shards' hash-key ranges of one stream (from ListShards)."""

    ranges: list[tuple[int, int, str]]
    fetched: float

    def shard_for(self, hash_key: int) -> str | None:
        for start, end, shard in self.ranges:
            if start <= hash_key <= end:
                return shard
        return None


@dataclass
class KinesisState:
    semantics: AwsSemantics
    upstream_url: str
    iterators: OrderedDict[str, IteratorState] = field(default_factory=OrderedDict)
    expired: set[ShardKey] = field(default_factory=set)
    trimmed: Counter[ShardKey] = field(default_factory=Counter)
    empty_pages: int = 0
    _calls: dict[tuple[str, ShardKey], TokenBucket] = field(default_factory=dict)
    _blocked_until: dict[ShardKey, float] = field(default_factory=dict)
    _horizons: dict[ShardKey, int] = field(default_factory=dict)
    # Per shard, sorted by last sequence number: (last, first, arrival time) of each write.
    _arrivals: dict[ShardKey, list[tuple[int, int, float]]] = field(default_factory=dict)
    _closed_seen: dict[ShardKey, float] = field(default_factory=dict)
    _listing_tokens: dict[str, str] = field(default_factory=dict)
    _shard_maps: dict[str, ShardMap] = field(default_factory=dict)
    _io_lock: threading.Lock = field(default_factory=threading.Lock)
    _client: Any = None

    # -- rates ("Quotas and limits") --------------------------------------------------------

    def _bucket(self, kind: str, key: ShardKey, per_s: float, now: float) -> TokenBucket:
        bucket = self._calls.get((kind, key))
        if bucket is None:
            # A call budget below one call a second still lets one call through per refill.
            capacity = per_s if kind.endswith("bytes") else max(per_s, 1.0)
            bucket = TokenBucket.full(per_s, now, capacity)
            self._calls[(kind, key)] = bucket
        return bucket

    def take_iterator_call(self, key: ShardKey, now: float) -> bool:
        rate = self.semantics.rate(self.semantics.get_shard_iterator_per_s)
        return rate is None or self._bucket("iterator calls", key, rate, now).take(1, now)

    def take_read_call(self, key: ShardKey, now: float) -> bool:
        """A GetRecords call may go ahead: no penalty, read budget left, a call left."""
        if now < self._blocked_until.get(key, float("-inf")):
            return False
        read_rate = self.semantics.rate(self.semantics.read_bytes_per_s)
        if read_rate is not None and not self._bucket("read bytes", key, read_rate, now).has_credit(
            now
        ):
            return False
        rate = self.semantics.rate(self.semantics.get_records_per_s)
        return rate is None or self._bucket("read calls", key, rate, now).take(1, now)

    def spend_read(self, key: ShardKey, returned: int, now: float) -> None:
        read_rate = self.semantics.rate(self.semantics.read_bytes_per_s)
        if read_rate is None:
            return
        self._bucket("read bytes", key, read_rate, now).spend(returned, now)
        penalty = self.semantics.read_penalty_s
        if penalty is not None and returned > read_rate:
            self._blocked_until[key] = now + penalty

    @property
    def writes_limited(self) -> bool:
        sem = self.semantics
        return sem.write_records_per_s is not None or sem.write_bytes_per_s is not None

    def take_write(self, key: ShardKey, size: int, now: float) -> bool:
        """One record of ``size`` bytes may be written to the shard now (and is counted)."""
        records = self.semantics.rate(self.semantics.write_records_per_s)
        volume = self.semantics.rate(self.semantics.write_bytes_per_s)
        record_bucket = self._bucket("write records", key, records, now) if records else None
        byte_bucket = self._bucket("write bytes", key, volume, now) if volume else None
        if byte_bucket is not None and not byte_bucket.has_credit(now):
            return False
        if record_bucket is not None and not record_bucket.take(1, now):
            return False
        if byte_bucket is not None:
            byte_bucket.spend(size, now)
        return True

    # -- iterators (GetShardIterator, GetRecords) ------------------------------------------

    def issue(
        self, key: ShardKey, now: float, *, upstream: str | None, after: str | None, fresh: bool
    ) -> str:
        """A new token for a position; ``fresh`` chains start with the empty pages."""
        ttl = self.semantics.iterator_ttl_s
        if ttl is not None:
            while self.iterators:
                oldest = next(iter(self.iterators.values()))
                if now - oldest.issued <= ttl:
                    break
                self.iterators.popitem(last=False)
        token = f"{uuid.uuid4().hex[:TOKEN_ID_CHARS]}{int(now * 1000):x}"
        empty = self.semantics.empty_pages_behind if fresh else 0
        self.iterators[token] = IteratorState(key, upstream, after, now, empty)
        return token

    def lookup(self, token: str, now: float) -> IteratorState | str:
        """The token's state, or the error code to answer with."""
        ttl = self.semantics.iterator_ttl_s
        state = self.iterators.get(token)
        issued = state.issued if state is not None else _issued_at(token)
        if issued is not None and ttl is not None and now - issued > ttl:
            return "ExpiredIteratorException"
        if state is None:
            return "InvalidArgumentException"
        return state

    def upstream_iterator_after(self, key: ShardKey, sequence_number: str) -> str:
        """Does I/O: an upstream iterator just after ``sequence_number``."""
        reply = self._upstream().get_shard_iterator(
            StreamName=key.stream,
            ShardId=key.shard,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=sequence_number,
        )
        return str(reply["ShardIterator"])

    # -- pages and retention (GetRecords, "Changing the data retention period") -------------

    def is_trimmed(self, key: ShardKey, record: dict[str, Any], now: float) -> bool:
        sequence = int(record["SequenceNumber"])
        if sequence < self._horizons.get(key, -1):
            return True
        retention = self.semantics.retention_s
        if retention is None:
            return False
        return self._arrival(key, sequence, record) < now - retention

    def cut_page(
        self, key: ShardKey, records: list[dict[str, Any]], now: float
    ) -> tuple[list[dict[str, Any]], bool]:
        """The records a page returns (trimmed ones dropped, within the page's byte limit)
        and whether the page was cut short of what upstream returned."""
        kept: list[dict[str, Any]] = []
        size = 0
        limit = self.semantics.page_max_bytes
        for record in records:
            if self.is_trimmed(key, record, now):
                self.trimmed[key] += 1
                continue
            size += encoded_size(record["Data"])
            if limit is not None and kept and size > limit:
                return kept, True
            kept.append(record)
        return kept, False

    def note_arrivals(self, stream: str, results: list[dict[str, Any]], now: float) -> None:
        """Remember when written records arrived (on ``now``'s clock), for retention."""
        if self.semantics.retention_s is None:
            return
        by_shard: dict[str, list[int]] = {}
        for result in results:
            if result.get("SequenceNumber") and result.get("ShardId"):
                by_shard.setdefault(result["ShardId"], []).append(int(result["SequenceNumber"]))
        for shard, sequences in by_shard.items():
            segments = self._arrivals.setdefault(ShardKey(stream, shard), [])
            bisect.insort(segments, (max(sequences), min(sequences), now))

    def _arrival(self, key: ShardKey, sequence: int, record: dict[str, Any]) -> float:
        # Written through the proxy: the proxy's clock; otherwise the upstream stamp.
        segments = self._arrivals.get(key, [])
        index = bisect.bisect_left(segments, (sequence, -1, float("-inf")))
        if index < len(segments) and segments[index][1] <= sequence <= segments[index][0]:
            return segments[index][2]
        return float(record.get("ApproximateArrivalTimestamp", 0.0))

    def trim(self, lock: threading.Lock, key: ShardKey, before: str | None) -> None:
        """Does I/O (reads the shard upstream), then moves the trim horizon under ``lock``."""
        last = self._last_sequence(key)
        closed = any(
            _is_closed(shard) and shard["ShardId"] == key.shard
            for shard in self._upstream().list_shards(StreamName=key.stream)["Shards"]
        )
        everything = last + 1 if last is not None else 0
        horizon = int(before) if before is not None else everything
        with lock:
            self._horizons[key] = max(self._horizons.get(key, 0), horizon)
            everything_gone = last is None or last < self._horizons[key]
            if self.semantics.expire_closed_shards and closed and everything_gone:
                self.expired.add(key)

    def _last_sequence(self, key: ShardKey) -> int | None:
        """Does I/O: the last sequence number in a shard (``None`` when it has no record)."""
        client = self._upstream()
        iterator = client.get_shard_iterator(
            StreamName=key.stream, ShardId=key.shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        last: int | None = None
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"] and not page.get("MillisBehindLatest"):
                break
            if page["Records"]:
                last = int(page["Records"][-1]["SequenceNumber"])
            iterator = page.get("NextShardIterator")
        return last

    # -- listings (ListShards, DescribeStream) ----------------------------------------------

    def stream_for_listing(self, request: dict[str, Any], reply: dict[str, Any]) -> str:
        stream = stream_of(request)
        if not stream and request.get("NextToken"):
            stream = self._listing_tokens.get(request["NextToken"], "")
        if reply.get("NextToken"):
            self._listing_tokens[reply["NextToken"]] = stream
        return stream

    def listed(self, stream: str, shards: list[dict[str, Any]], now: float) -> list[Any]:
        """The shards a listing keeps: closed shards past retention have left."""
        retention = self.semantics.retention_s
        kept = []
        for shard in shards:
            key = ShardKey(stream, shard["ShardId"])
            if _is_closed(shard):
                # Closing time as first seen here: records in it are at most this old.
                closed_at = self._closed_seen.setdefault(key, now)
                past = retention is not None and now - closed_at > retention
                if self.semantics.expire_closed_shards and past:
                    self.expired.add(key)
            if key not in self.expired:
                kept.append(shard)
        return kept

    # -- hash-key map (PutRecords) ----------------------------------------------------------

    def shard_map(self, stream: str) -> ShardMap:
        """Does I/O when the cached map is older than a second: the open shards' ranges."""
        with self._io_lock:
            cached = self._shard_maps.get(stream)
        if cached is not None and time.monotonic() - cached.fetched < SHARD_MAP_TTL_S:
            return cached
        client = self._upstream()
        ranges: list[tuple[int, int, str]] = []
        kwargs: dict[str, Any] = {"StreamName": stream}
        while True:
            page = client.list_shards(**kwargs)
            for shard in page["Shards"]:
                if _is_closed(shard):
                    continue
                hashes = shard["HashKeyRange"]
                ranges.append(
                    (int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"]), shard["ShardId"])
                )
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        fresh = ShardMap(sorted(ranges), time.monotonic())
        with self._io_lock:
            self._shard_maps[stream] = fresh
        return fresh

    def forget_shard_map(self, stream: str) -> None:
        with self._io_lock:
            self._shard_maps.pop(stream, None)

    def _upstream(self) -> Any:
        with self._io_lock:
            if self._client is None:
                self._client = boto3.client(
                    "kinesis",
                    endpoint_url=self.upstream_url,
                    region_name="us-east-1",
                    config=Config(retries={"mode": "standard", "max_attempts": 5}),
                    aws_access_key_id=LOCAL_CREDENTIALS["aws_access_key_id"],
                    aws_secret_access_key=LOCAL_CREDENTIALS["aws_secret_access_key"],
                )
            return self._client


def stream_of(request: dict[str, Any]) -> str:
    """The stream a request names, by StreamName or StreamARN (``...:stream/NAME``)."""
    if request.get("StreamName"):
        return str(request["StreamName"])
    arn = str(request.get("StreamARN") or "")
    return arn.rpartition("stream/")[2] if arn else ""


def encoded_size(data: str) -> int:
    """The byte length of base64 ``data`` without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=") if data else 0


def _is_closed(shard: dict[str, Any]) -> bool:
    # kinesis-mock lists an open shard with "EndingSequenceNumber": null.
    return bool(shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))


def _issued_at(token: str) -> float | None:
    try:
        return int(token[TOKEN_ID_CHARS:], 16) / 1000
    except ValueError:
        return None
