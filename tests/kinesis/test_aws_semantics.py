"""The AWS-semantics layer: each behaviour proven with plain boto3 through the proxy.

Rate limits, iterator ages and retention run on a :class:`ManualClock`, so every assertion
is about a fixed call pattern, never about elapsed time. Behaviours whose outcome depends on
the engine behind the proxy (reads, trims, listings, shard routing) run on moto and on
kinesis-mock; those the proxy decides alone (call shapes, call budgets) run on moto.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics, ManualClock
from streamenrich.testing.proxy import single_attempt_client
from tests.support import wait_active

THROTTLED = "ProvisionedThroughputExceededException"
OFF = AwsSemantics.off()
TOP_HASH = str(2**127 + 1000)  # upper half on both engines (moto: 2**128 - 1 is in no shard)

ProxyFactory = Callable[..., AwsKinesisProxy]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _factory(upstream: str, clock: ManualClock) -> Iterator[ProxyFactory]:
    started: list[AwsKinesisProxy] = []

    def make(**switches: Any) -> AwsKinesisProxy:
        proxy = AwsKinesisProxy(upstream, dataclasses.replace(OFF, **switches), clock=clock)
        started.append(proxy.start())
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
        assert proxy.failures == []


@pytest.fixture
def aws(endpoint: str, clock: ManualClock) -> Iterator[ProxyFactory]:
    """``aws(**switches)``: a started proxy in front of the test's engine, all else off."""
    yield from _factory(endpoint, clock)


@pytest.fixture
def aws_moto(moto_endpoint: str, clock: ManualClock) -> Iterator[ProxyFactory]:
    yield from _factory(moto_endpoint, clock)


def _code(call: Callable[[], Any]) -> str | None:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def _put(client: Any, stream: str, payloads: list[bytes], hash_key: str = "0") -> list[str]:
    reply = client.put_records(
        StreamName=stream,
        Records=[{"Data": d, "PartitionKey": "k", "ExplicitHashKey": hash_key} for d in payloads],
    )
    assert reply["FailedRecordCount"] == 0
    return [r["SequenceNumber"] for r in reply["Records"]]


def _first_shard(client: Any, stream: str) -> str:
    return str(client.list_shards(StreamName=stream)["Shards"][0]["ShardId"])


def _iterator(client: Any, stream: str, shard: str, kind: str = "TRIM_HORIZON", **kw: Any) -> str:
    return str(
        client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType=kind, **kw)[
            "ShardIterator"
        ]
    )


def _read_all(client: Any, iterator: str, limit: int = 10_000) -> list[list[bytes]]:
    """The pages of a read up to the tip: each page's Data, in order."""
    pages: list[list[bytes]] = []
    while True:
        reply = client.get_records(ShardIterator=iterator, Limit=limit)
        pages.append([r["Data"] for r in reply["Records"]])
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            return pages
        iterator = reply["NextShardIterator"]


def _data(pages: list[list[bytes]]) -> list[bytes]:
    return [d for page in pages for d in page]


# -- defaults -----------------------------------------------------------------------------


def test_real_has_the_documented_aws_values_and_off_switches_everything_off() -> None:
    real = AwsSemantics.real()
    assert (real.get_records_per_s, real.read_bytes_per_s, real.read_penalty_s) == (5, 2e6, 5)
    assert (real.get_shard_iterator_per_s, real.write_bytes_per_s) == (5, 1e6)
    assert real.write_records_per_s == 1000
    assert (real.max_get_records_limit, real.page_max_records) == (10_000, 10_000)
    assert real.page_max_bytes == 10 * 1024 * 1024
    assert (real.put_max_records, real.put_max_bytes) == (500, 5 * 1024 * 1024)
    assert real.record_max_bytes == 1024 * 1024
    assert (real.iterator_ttl_s, real.retention_s) == (300, 24 * 3600)
    assert (real.empty_pages_behind, real.empty_pages_between) == (12, 0)
    assert real.expire_closed_shards and real.rate_scale == 1.0
    off = dataclasses.asdict(AwsSemantics.off())
    off.pop("rate_scale")
    assert all(value in (None, 0, False) for value in off.values())


def test_real_semantics_read_of_a_small_shard_end_to_end(
    endpoint: str, new_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = new_stream(1)
    with AwsKinesisProxy(endpoint, AwsSemantics.real(), clock=clock) as proxy:
        client = single_attempt_client(proxy.endpoint_url)
        payloads = [f"e{i}".encode() for i in range(7)]
        _put(client, stream, payloads)
        iterator = _iterator(client, stream, _first_shard(client, stream))
        pages: list[list[bytes]] = []
        while True:
            try:
                reply = client.get_records(ShardIterator=iterator)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == THROTTLED
                clock.advance(0.2)  # one call's worth at 5 calls/s
                continue
            pages.append([r["Data"] for r in reply["Records"]])
            if not reply["Records"] and reply["MillisBehindLatest"] == 0:
                break
            iterator = reply["NextShardIterator"]
        # 12 empty pages, the data, the tip: 14 calls pass; 5 fit the first second.
        assert pages == [[]] * 12 + [payloads, []]
        assert len(proxy.injected("GetRecords")) == 14 - 5
        assert proxy.failures == []


# -- per-shard rates ("Quotas and limits") ------------------------------------------------


def test_get_records_five_calls_per_second_per_shard_shared_by_consumers(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = moto_stream(2)
    proxy = aws_moto(get_records_per_s=5.0)
    consumers = [single_attempt_client(proxy.endpoint_url) for _ in range(2)]
    shards = [s["ShardId"] for s in consumers[0].list_shards(StreamName=stream)["Shards"]]
    iterator = _iterator(consumers[0], stream, shards[0])
    other = _iterator(consumers[0], stream, shards[1])

    def read(i: int, it: str = iterator) -> str | None:
        return _code(lambda: consumers[i % 2].get_records(ShardIterator=it))

    # Two consumers alternate on one shard: 5 calls pass in the second, 3 are throttled.
    assert [read(i) for i in range(8)] == [None] * 5 + [THROTTLED] * 3
    assert read(0, other) is None  # the other shard has its own budget
    clock.advance(0.2)  # one call's worth
    assert [read(i) for i in range(2)] == [None, THROTTLED]
    clock.advance(1.0)
    assert [read(i) for i in range(6)] == [None] * 5 + [THROTTLED]
    assert len(proxy.injected("GetRecords")) == 5


def test_concurrent_consumers_share_one_budget_exactly(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str]
) -> None:
    stream = moto_stream(1)
    proxy = aws_moto(get_records_per_s=5.0)
    clients = [single_attempt_client(proxy.endpoint_url) for _ in range(4)]
    iterator = _iterator(clients[0], stream, _first_shard(clients[0], stream))

    def read(i: int) -> str | None:
        return _code(lambda: clients[i % 4].get_records(ShardIterator=iterator))

    with ThreadPoolExecutor(4) as pool:  # the clock stands still: 5 of the 20 calls pass
        outcomes = list(pool.map(read, range(20)))
    assert outcomes.count(None) == 5 and outcomes.count(THROTTLED) == 15


def test_read_bytes_budget_lets_a_shard_go_into_debt_then_throttles(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = moto_stream(1)
    proxy = aws_moto(read_bytes_per_s=1000.0)
    client = single_attempt_client(proxy.endpoint_url)
    shard = _first_shard(client, stream)
    _put(client, stream, [b"a" * 600, b"b" * 600, b"c" * 600])
    iterator = _iterator(client, stream, shard)

    def read() -> str | None:
        return _code(lambda: client.get_records(ShardIterator=iterator, Limit=1))

    assert [read(), read(), read()] == [None, None, THROTTLED]  # 1000 - 600 - 600 = -200
    clock.advance(0.2)  # back to 0: still no credit
    assert read() == THROTTLED
    clock.advance(0.1)  # 100 bytes of credit
    assert read() is None


def test_a_page_larger_than_a_second_of_reads_throttles_the_next_five_seconds(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = moto_stream(1)
    proxy = aws_moto(read_bytes_per_s=1000.0, read_penalty_s=5.0)
    client = single_attempt_client(proxy.endpoint_url)
    shard = _first_shard(client, stream)
    _put(client, stream, [b"a" * 600, b"b" * 600])
    iterator = _iterator(client, stream, shard)
    page = client.get_records(ShardIterator=iterator)  # 1200 bytes > 1000: the penalty
    assert [r["Data"] for r in page["Records"]] == [b"a" * 600, b"b" * 600]
    outcomes = []
    for step in (1.0, 1.0, 1.0, 1.9):
        clock.advance(step)
        outcomes.append(_code(lambda: client.get_records(ShardIterator=iterator)))
    assert outcomes == [THROTTLED] * 4
    clock.advance(0.1)  # 5.0 s after the big page
    assert _code(lambda: client.get_records(ShardIterator=iterator)) is None


def test_get_shard_iterator_five_calls_per_second_per_shard(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = moto_stream(2)
    proxy = aws_moto(get_shard_iterator_per_s=5.0)
    client = single_attempt_client(proxy.endpoint_url)
    first, second = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]

    def get(shard: str) -> str | None:
        return _code(lambda: _iterator(client, stream, shard))

    assert [get(first) for _ in range(7)] == [None] * 5 + [THROTTLED] * 2
    assert get(second) is None
    clock.advance(0.4)
    assert [get(first) for _ in range(3)] == [None, None, THROTTLED]


def test_put_records_fails_only_the_entries_over_a_shards_record_rate(
    aws: ProxyFactory, new_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = new_stream(2)
    proxy = aws(write_records_per_s=3.0)
    client = single_attempt_client(proxy.endpoint_url)
    entries = [
        {"Data": f"low-{i}".encode(), "PartitionKey": "k", "ExplicitHashKey": "0"} for i in range(5)
    ]
    entries[1:1] = [{"Data": b"high", "PartitionKey": "k", "ExplicitHashKey": TOP_HASH}]
    reply = client.put_records(StreamName=stream, Records=entries)
    codes = [r.get("ErrorCode") for r in reply["Records"]]
    # Entries 0, 2, 3 use the low shard's 3 records; 4 and 5 are over; the high shard is free.
    assert codes == [None, None, None, None, THROTTLED, THROTTLED]
    assert reply["FailedRecordCount"] == 2
    assert proxy.put_entries_forwarded == 4
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    stored = _data(_read_all(client, _iterator(client, stream, shards[0])))
    assert stored == [b"low-0", b"low-1", b"low-2"]
    clock.advance(1.0)
    single = _code(
        lambda: client.put_record(
            StreamName=stream, Data=b"x", PartitionKey="k", ExplicitHashKey="0"
        )
    )
    assert single is None


def test_put_routes_by_md5_of_the_partition_key_as_the_engine_does(
    aws: ProxyFactory, new_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = new_stream(2)
    proxy = aws(write_records_per_s=4.0)
    client = single_attempt_client(proxy.endpoint_url)
    ranges = [
        (
            int(s["HashKeyRange"]["StartingHashKey"]),
            int(s["HashKeyRange"]["EndingHashKey"]),
            s["ShardId"],
        )
        for s in client.list_shards(StreamName=stream)["Shards"]
    ]

    def shard_of(key: str) -> str:
        value = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        return next(shard for start, end, shard in ranges if start <= value <= end)

    keys = [f"rut-{i}" for i in range(12)]
    reply = client.put_records(
        StreamName=stream, Records=[{"Data": b"d", "PartitionKey": k} for k in keys]
    )
    seen: dict[str, int] = {}
    for key, result in zip(keys, reply["Records"], strict=True):
        shard = shard_of(key)
        seen[shard] = seen.get(shard, 0) + 1
        if seen[shard] <= 4:
            assert result.get("ErrorCode") is None and result["ShardId"] == shard
        else:
            assert result["ErrorCode"] == THROTTLED
    assert reply["FailedRecordCount"] == sum(max(0, n - 4) for n in seen.values())


def test_write_bytes_budget_and_put_record_throttled_whole(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = moto_stream(1)
    proxy = aws_moto(write_bytes_per_s=100.0)
    client = single_attempt_client(proxy.endpoint_url)
    reply = client.put_records(
        StreamName=stream, Records=[{"Data": b"x" * 59, "PartitionKey": "k"} for _ in range(3)]
    )  # 60 bytes each: 100 -> 40 -> -20, the third has no credit
    assert [r.get("ErrorCode") for r in reply["Records"]] == [None, None, THROTTLED]
    put_one = lambda: client.put_record(StreamName=stream, Data=b"y", PartitionKey="k")  # noqa: E731
    assert _code(put_one) == THROTTLED
    clock.advance(0.3)
    assert _code(put_one) is None
    assert proxy.put_entries_forwarded == 2


# -- call shapes (GetRecords, PutRecords) --------------------------------------------------


def test_call_shape_limits_are_refused_before_anything_is_stored(
    aws_moto: ProxyFactory, moto_stream: Callable[..., str]
) -> None:
    stream = moto_stream(1)
    real = AwsSemantics.real()
    proxy = aws_moto(
        max_get_records_limit=real.max_get_records_limit,
        put_max_records=real.put_max_records,
        put_max_bytes=real.put_max_bytes,
        record_max_bytes=real.record_max_bytes,
    )
    client = single_attempt_client(proxy.endpoint_url)
    iterator = _iterator(client, stream, _first_shard(client, stream))
    assert _code(lambda: client.get_records(ShardIterator=iterator, Limit=10_001)) == (
        "InvalidArgumentException"
    )
    assert _code(lambda: client.get_records(ShardIterator=iterator, Limit=10_000)) is None

    def put(count: int, size: int, key: str = "k") -> str | None:
        records = [{"Data": b"x" * size, "PartitionKey": key} for _ in range(count)]
        return _code(lambda: client.put_records(StreamName=stream, Records=records))

    assert put(501, 1) == "ValidationException"
    assert put(6, 1_000_000) == "InvalidArgumentException"  # 6 MB > 5 MiB
    assert put(1, 1024 * 1024, key="k") == "InvalidArgumentException"  # 1 MiB + key
    assert put(1, 1024 * 1024 - 1) is None
    assert put(500, 1) is None
    assert proxy.put_entries_forwarded == 501


@pytest.mark.parametrize(
    ("switches", "page_sizes"),
    [
        ({"page_max_records": 3}, [3, 3, 3, 1]),
        ({"page_max_bytes": 250}, [2, 2, 2, 2, 2]),
    ],
)
def test_pages_are_cut_and_the_next_page_continues_after_the_last_record(
    aws: ProxyFactory,
    new_stream: Callable[..., str],
    switches: dict[str, int],
    page_sizes: list[int],
) -> None:
    stream = new_stream(1)
    proxy = aws(**switches)
    client = single_attempt_client(proxy.endpoint_url)
    payloads = [bytes([65 + i]) * 100 for i in range(10)]
    _put(client, stream, payloads)
    pages = _read_all(client, _iterator(client, stream, _first_shard(client, stream)), 100)
    assert [len(p) for p in pages] == [*page_sizes, 0]
    assert _data(pages) == payloads
    assert proxy.records_fetched == 10


# -- empty pages behind the tip (GetRecords) -----------------------------------------------


def test_fresh_chains_behind_the_tip_start_with_empty_pages(
    aws: ProxyFactory, new_stream: Callable[..., str]
) -> None:
    stream = new_stream(1)
    proxy = aws(empty_pages_behind=4, empty_pages_between=2)
    client = single_attempt_client(proxy.endpoint_url)
    shard = _first_shard(client, stream)
    latest = _iterator(client, stream, shard, "LATEST")
    at_tip = client.get_records(ShardIterator=latest)
    assert (at_tip["Records"], at_tip["MillisBehindLatest"]) == ([], 0)
    payloads = [b"r0", b"r1", b"r2", b"r3", b"r4"]
    _put(client, stream, payloads)
    iterator = _iterator(client, stream, shard)
    sizes, behind = [], []
    while True:
        reply = client.get_records(ShardIterator=iterator, Limit=2)
        sizes.append(len(reply["Records"]))
        behind.append(reply["MillisBehindLatest"])
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            break
        iterator = reply["NextShardIterator"]
    assert sizes == [0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 1, 0]
    assert all(ms > 0 for size, ms in list(zip(sizes, behind, strict=True))[:-1] if size == 0)
    assert behind[-1] == 0
    assert proxy.empty_pages == 8
    assert proxy.records_fetched == 5


# -- iterators (GetShardIterator) ----------------------------------------------------------


def test_iterators_are_positions_until_they_expire(
    aws: ProxyFactory, new_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = new_stream(1)
    proxy = aws(iterator_ttl_s=2.0)
    client = single_attempt_client(proxy.endpoint_url)
    _put(client, stream, [b"a", b"b", b"c"])
    iterator = _iterator(client, stream, _first_shard(client, stream))
    first = client.get_records(ShardIterator=iterator, Limit=2)
    again = client.get_records(ShardIterator=iterator, Limit=2)  # same position, same records
    assert (
        [r["Data"] for r in first["Records"]]
        == [r["Data"] for r in again["Records"]]
        == [
            b"a",
            b"b",
        ]
    )
    assert first["NextShardIterator"] != again["NextShardIterator"] != iterator
    clock.advance(2.0)  # exactly the TTL: still valid
    fresh = client.get_records(ShardIterator=iterator, Limit=2)["NextShardIterator"]
    clock.advance(0.001)
    assert _code(lambda: client.get_records(ShardIterator=iterator)) == "ExpiredIteratorException"
    assert _code(lambda: client.get_records(ShardIterator=first["NextShardIterator"])) == (
        "ExpiredIteratorException"
    )
    assert [r["Data"] for r in client.get_records(ShardIterator=fresh)["Records"]] == [b"c"]
    assert [e.injected for e in proxy.injected("GetRecords")] == ["ExpiredIteratorException"] * 2


# -- retention ("Changing the data retention period") ---------------------------------------


def test_trim_hides_records_and_positions_before_it_continue_at_the_horizon(
    aws: ProxyFactory, new_stream: Callable[..., str]
) -> None:
    stream = new_stream(1)
    proxy = aws()
    client = single_attempt_client(proxy.endpoint_url)
    shard = _first_shard(client, stream)
    payloads = [f"r{i}".encode() for i in range(6)]
    sequences = _put(client, stream, payloads)
    proxy.trim(stream, shard, sequences[3])
    assert _data(_read_all(client, _iterator(client, stream, shard))) == payloads[3:]
    at = _iterator(client, stream, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=sequences[1])
    assert _data(_read_all(client, at)) == payloads[3:]
    after = _iterator(
        client, stream, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=sequences[0]
    )
    assert _data(_read_all(client, after)) == payloads[3:]
    assert proxy.trimmed_by_shard == {(stream, shard): 3 + 2 + 2}
    proxy.trim(stream, shard)  # everything written so far
    assert _data(_read_all(client, _iterator(client, stream, shard))) == []
    later = _put(client, stream, [b"new"])
    assert later and _data(_read_all(client, _iterator(client, stream, shard))) == [b"new"]


def test_retention_drops_records_older_than_the_period(
    aws: ProxyFactory, new_stream: Callable[..., str], clock: ManualClock
) -> None:
    stream = new_stream(1)
    proxy = aws(retention_s=60.0)
    client = single_attempt_client(proxy.endpoint_url)
    shard = _first_shard(client, stream)
    _put(client, stream, [b"old-0", b"old-1"])
    clock.advance(30.0)
    _put(client, stream, [b"new-0"])
    clock.advance(31.0)  # old: 61 s, new: 31 s
    assert _data(_read_all(client, _iterator(client, stream, shard))) == [b"new-0"]
    assert proxy.trimmed_skipped == 2
    clock.advance(30.0)
    assert _data(_read_all(client, _iterator(client, stream, shard))) == []


# -- shards past retention (ListShards) ------------------------------------------------------


def _listed(client: Any, stream: str) -> tuple[list[str], list[str]]:
    listing = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    described = client.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    return listing, [s["ShardId"] for s in described]


def test_an_expired_shard_leaves_listings_and_calls_on_it_fail(
    aws: ProxyFactory, new_stream: Callable[..., str]
) -> None:
    stream = new_stream(2)
    proxy = aws()
    client = single_attempt_client(proxy.endpoint_url)
    first, second = _listed(client, stream)[0]
    iterator = _iterator(client, stream, first)
    proxy.expire_shard(stream, first)
    assert _listed(client, stream) == ([second], [second])
    assert _code(lambda: _iterator(client, stream, first)) == "ResourceNotFoundException"
    assert _code(lambda: client.get_records(ShardIterator=iterator)) == "ResourceNotFoundException"
    assert _code(lambda: _iterator(client, stream, second)) is None


def test_closed_shards_leave_listings_once_past_retention_or_fully_trimmed(
    aws: ProxyFactory,
    new_stream: Callable[..., str],
    clock: ManualClock,
    request: pytest.FixtureRequest,
) -> None:
    stream = new_stream(2)
    proxy = aws(retention_s=100.0, expire_closed_shards=True)
    client = single_attempt_client(proxy.endpoint_url)
    first, second = _listed(client, stream)[0]
    _put(client, stream, [b"in-first"], hash_key="0")
    client.merge_shards(StreamName=stream, ShardToMerge=first, AdjacentShardToMerge=second)
    wait_active(client, stream)
    listing, described = _listed(client, stream)  # the parents are seen closed now
    assert listing == described and listing[:2] == [first, second] and len(listing) == 3
    child = listing[2]
    end = client.get_records(ShardIterator=_iterator(client, stream, first))
    assert [r["Data"] for r in end["Records"]] == [b"in-first"]
    if "kinesis-mock" in request.node.callspec.id:  # moto never ends a closed shard
        assert "NextShardIterator" not in end
    proxy.trim(stream, second)  # closed and nothing left: gone at once
    assert _listed(client, stream) == ([first, child], [first, child])
    clock.advance(100.5)
    assert _listed(client, stream) == ([child], [child])
    assert _code(lambda: _iterator(client, stream, first)) == "ResourceNotFoundException"
