"""The Kinesis sink: PutRecords limits, partial failures, record and schema errors.

Every write goes through :class:`tests.kinesis.proxy.KinesisProxy`, which sees each
PutRecords call as sent and can fail entries; the output stream is then drained straight
from the upstream server with plain boto3 (``tests.support.drain``), the oracle.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.errors import AnalysisException, PythonException, StreamingQueryException

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.errors import PutRecordsError, RecordTooLargeError
from streamenrich.kinesis.sink import (
    MAX_BYTES_PER_CALL,
    MAX_PUT_ATTEMPTS,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    PutEntry,
    RecordPublisher,
    chunk_entries,
    entries_from_arrow,
)
from streamenrich.testing.proxy import KinesisProxy, entry_digest, single_attempt_client
from tests.support import drain, multiset

THROTTLED = "ProvisionedThroughputExceededException"
SINK_SCHEMA = "partitionKey STRING, data BINARY"
BIG = 900_000  # bytes: five fit in one PutRecords call, six do not


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[KinesisProxy]:
    with KinesisProxy(moto_endpoint) as running:
        yield running
    assert running.failures == []


def stored(endpoint: str, stream: str) -> list[tuple[str, bytes]]:
    """What the output stream holds, read from the upstream server (not through the proxy)."""
    return [
        (r["PartitionKey"], bytes(r["Data"]))
        for r in drain(kinesis_client(endpoint_url=endpoint), stream)
    ]


def digests(pairs: list[tuple[str, bytes]]) -> Counter[tuple[str, str]]:
    return Counter(entry_digest(key, data) for key, data in pairs)


def small_rows(n: int, prefix: str = "row") -> list[tuple[str, bytes]]:
    return [(f"key-{i % 613}", f"{prefix}-{i:05d}-".encode() + b"x" * (i % 90)) for i in range(n)]


def write_batch(df: Any, stream: str, endpoint_url: str) -> None:
    (
        df.write.format("kinesis")
        .option("streamName", stream)
        .option("endpointUrl", endpoint_url)
        .mode("append")
        .save()
    )


def write_stream(
    spark: Any,
    rows: list[tuple[str, bytes]],
    schema: str,
    stream: str,
    endpoint_url: str,
    tmp_path: Path,
) -> None:
    """Write ``rows`` with a streaming query: parquet files in, ``kinesis`` out, availableNow."""
    source = tmp_path / "input"
    spark.createDataFrame(rows, schema).write.parquet(str(source))
    query = (
        spark.readStream.schema(schema)
        .parquet(str(source))
        .writeStream.format("kinesis")
        .option("streamName", stream)
        .option("endpointUrl", endpoint_url)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        finished = query.awaitTermination(120)
    finally:
        if query.isActive:
            query.stop()
    assert finished, "the streaming write did not finish within 120s"


# -- Spark batch and streaming writes --------------------------------------------------------


def test_batch_write_keeps_every_call_within_limits_and_stores_every_row(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=2)
    rows = small_rows(10_000)
    # Runs of ~900 KB rows, one in each of the two partitions: the 5 MiB bound must split.
    for i in [*range(1_000, 1_012), *range(7_000, 7_006)]:
        rows[i] = (f"big-{i}", f"{i:05d}".encode() * (BIG // 5))

    write_batch(spark.createDataFrame(rows, SINK_SCHEMA), stream, proxy.endpoint_url)

    calls = proxy.put_calls
    assert all(count <= MAX_RECORDS_PER_CALL for count, _ in calls)
    assert all(size <= MAX_BYTES_PER_CALL for _, size in calls)
    # The byte bound was what closed some calls: five big rows, well short of 500 records.
    assert any(size > 5 * BIG and count < MAX_RECORDS_PER_CALL for count, size in calls)
    assert sum(count for count, _ in calls) == len(rows)  # no retries: each row sent once
    assert proxy.calls["PutRecords"] == len(calls)
    assert proxy.put_entries_forwarded == len(rows)
    assert multiset(stored(moto_endpoint, stream)) == multiset(rows)


def test_streaming_write_retries_only_the_failed_entries(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=2)
    rows = small_rows(10_000, prefix="streamed")
    proxy.fail_put_entries(0.3)

    write_stream(spark, rows, SINK_SCHEMA, stream, proxy.endpoint_url, tmp_path)

    assert multiset(stored(moto_endpoint, stream)) == multiset(rows)
    log = proxy.put_log
    sent: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for call in log:
        sent.update(call.entries)
        failed.update(call.entries[i] for i in call.failed)
    assert sum(failed.values()) > 0.3 * len(rows) - 50
    # Every row was stored exactly once, and what was sent again is exactly what failed.
    assert proxy.put_entries_forwarded == len(rows)
    assert sent == digests(rows) + failed
    assert all(len(call.entries) <= MAX_RECORDS_PER_CALL for call in log)


def test_write_fails_naming_stream_and_error_when_entries_keep_failing(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    rows = small_rows(10)
    proxy.fail_put_entries(1.0)

    with pytest.raises(PythonException) as failure:
        write_batch(
            spark.createDataFrame(rows, SINK_SCHEMA).coalesce(1), stream, proxy.endpoint_url
        )

    message = str(failure.value)
    assert "PutRecordsError" in message
    assert (
        f"PutRecords to stream {stream!r}: 10 records still failed after {MAX_PUT_ATTEMPTS} "
        f"attempts ({THROTTLED})"
    ) in message
    assert [count for count, _ in proxy.put_calls] == [10] * MAX_PUT_ATTEMPTS
    assert proxy.put_entries_forwarded == 0
    assert stored(moto_endpoint, stream) == []


def test_write_rejects_a_record_over_1_mib_before_any_call(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    too_big = b"z" * (MAX_RECORD_BYTES - len("big") + 1)
    rows = [("small", b"a"), ("big", too_big), ("small", b"b")]

    with pytest.raises(PythonException) as failure:
        write_batch(
            spark.createDataFrame(rows, SINK_SCHEMA).coalesce(1), stream, proxy.endpoint_url
        )

    message = str(failure.value)
    assert "RecordTooLargeError" in message
    assert (
        f"stream {stream!r}: a record of {MAX_RECORD_BYTES + 1} bytes (data plus partition key "
        f"'big') exceeds the Kinesis limit of {MAX_RECORD_BYTES} bytes"
    ) in message
    assert proxy.calls["PutRecords"] == 0
    assert stored(moto_endpoint, stream) == []


ARROW_BATCH_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"


@pytest.fixture
def arrow_batches_of_500(spark: Any) -> Iterator[None]:
    """Spark hands a writer task its rows in Arrow batches of 500 (default 10,000)."""
    before = spark.conf.get(ARROW_BATCH_KEY)
    spark.conf.set(ARROW_BATCH_KEY, "500")
    yield
    spark.conf.set(ARROW_BATCH_KEY, before)


def rows_with_one_too_big(n: int, at: int) -> list[tuple[str, bytes]]:
    rows = small_rows(n)
    rows[at] = ("big", b"z" * (MAX_RECORD_BYTES - len("big") + 1))
    return rows


TOO_BIG_AT_1100 = (
    f"a record of {MAX_RECORD_BYTES + 1} bytes (data plus partition key 'big') exceeds the "
    f"Kinesis limit of {MAX_RECORD_BYTES} bytes (row 1100 of the task; nothing of the task "
    "was written)"
)


@pytest.mark.usefixtures("arrow_batches_of_500")
def test_batch_write_refuses_a_task_with_a_record_over_1_mib_in_a_later_chunk_sending_nothing(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    # Row 1,100 of the task is in its third Arrow batch and its third PutRecords chunk: the
    # rows before it were sent before the task failed, and again by every retry.
    stream = moto_stream(shards=1)
    rows = rows_with_one_too_big(1_200, at=1_100)

    with pytest.raises(PythonException) as failure:
        write_batch(
            spark.createDataFrame(rows, SINK_SCHEMA).coalesce(1), stream, proxy.endpoint_url
        )

    message = str(failure.value)
    assert "RecordTooLargeError" in message
    assert f"stream {stream!r}: {TOO_BIG_AT_1100}" in message
    assert proxy.put_calls == []
    assert stored(moto_endpoint, stream) == []


@pytest.mark.usefixtures("arrow_batches_of_500")
def test_streaming_write_refuses_a_task_with_a_record_over_1_mib_in_a_later_chunk_sending_nothing(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=1)
    rows = rows_with_one_too_big(1_200, at=1_100)
    # One parquet file, so one task holds all the rows in their order.
    frame = spark.createDataFrame(rows, SINK_SCHEMA).coalesce(1)
    frame.write.parquet(str(tmp_path / "input"))

    with pytest.raises(StreamingQueryException) as failure:
        query = (
            spark.readStream.schema(SINK_SCHEMA)
            .parquet(str(tmp_path / "input"))
            .writeStream.format("kinesis")
            .option("streamName", stream)
            .option("endpointUrl", proxy.endpoint_url)
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        try:
            query.awaitTermination(120)
        finally:
            query.stop()

    assert TOO_BIG_AT_1100 in str(failure.value)
    assert proxy.put_calls == []
    assert stored(moto_endpoint, stream) == []


def test_string_data_and_explicit_hash_keys_are_written(
    spark: Any, moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=2)
    # Shard 1 owns [2**127, 2**128 - 1]; not its very top: moto treats a shard's ending hash
    # key as exclusive and answers 500 for 2**128 - 1.
    second = str(2**127 + 1)
    rows = [("same-key", "héllo", "0"), ("same-key", "wörld", second)]

    write_batch(
        spark.createDataFrame(rows, "partitionKey STRING, data STRING, explicitHashKey STRING"),
        stream,
        proxy.endpoint_url,
    )

    client = kinesis_client(endpoint_url=moto_endpoint)
    by_shard = {}
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        by_shard[shard] = [
            bytes(r["Data"]) for r in client.get_records(ShardIterator=iterator)["Records"]
        ]
    # The explicit hash key, not the partition key, chose the shard; data went out as UTF-8.
    assert by_shard == {
        "shardId-000000000000": ["héllo".encode()],
        "shardId-000000000001": ["wörld".encode()],
    }


SCHEMA_ERRORS = [
    pytest.param(
        "partitionKey STRING, data BINARY, extra INT",
        [("k", b"d", 1)],
        "column 'extra' is not accepted by the kinesis sink",
        id="extra-column",
    ),
    pytest.param(
        "partitionKey STRING",
        [("k",)],
        "column 'data' is required by the kinesis sink",
        id="missing-data",
    ),
    pytest.param(
        "partitionKey STRING, data INT",
        [("k", 1)],
        "column 'data' has type integer; the kinesis sink needs BINARY or STRING",
        id="data-not-bytes",
    ),
    pytest.param(
        "partitionKey INT, data BINARY",
        [(1, b"d")],
        "column 'partitionKey' has type integer; the kinesis sink needs STRING",
        id="key-not-string",
    ),
]


@pytest.mark.parametrize(("schema", "rows", "expected"), SCHEMA_ERRORS)
def test_batch_write_rejects_a_bad_schema_naming_the_column(
    spark: Any,
    moto_stream: Any,
    proxy: KinesisProxy,
    schema: str,
    rows: list[tuple[Any, ...]],
    expected: str,
) -> None:
    stream = moto_stream(shards=1)

    # Raised when Spark builds the writer, before any task: an AnalysisException.
    with pytest.raises(AnalysisException) as failure:
        write_batch(spark.createDataFrame(rows, schema), stream, proxy.endpoint_url)

    assert "SchemaError" in str(failure.value)
    assert expected in str(failure.value)
    assert proxy.calls["PutRecords"] == 0


def test_streaming_write_rejects_a_bad_schema_naming_the_column(
    spark: Any, moto_stream: Any, proxy: KinesisProxy, tmp_path: Path
) -> None:
    stream = moto_stream(shards=1)

    with pytest.raises(StreamingQueryException) as failure:
        write_stream(
            spark,
            [("k", b"d", 1)],
            "partitionKey STRING, data BINARY, extra INT",
            stream,
            proxy.endpoint_url,
            tmp_path,
        )

    assert "SchemaError: column 'extra' is not accepted by the kinesis sink" in str(failure.value)
    assert proxy.calls["PutRecords"] == 0


# -- chunk_entries ---------------------------------------------------------------------------


def entry(size: int, key: str = "k") -> PutEntry:
    return PutEntry(b"d" * (size - len(key)), key)


def test_chunk_entries_caps_records_per_call_and_keeps_order() -> None:
    entries = [PutEntry(f"{i}".encode(), f"k{i}") for i in range(1_001)]

    chunks = list(chunk_entries(entries))

    assert [len(c) for c in chunks] == [500, 500, 1]
    assert [e for c in chunks for e in c] == entries


def test_chunk_entries_caps_bytes_per_call() -> None:
    entries = [entry(MAX_RECORD_BYTES, key=f"k{i:02d}") for i in range(11)]

    chunks = list(chunk_entries(entries))

    assert [len(c) for c in chunks] == [5, 5, 1]  # 5 x 1 MiB is exactly the 5 MiB limit
    assert [e for c in chunks for e in c] == entries


def test_chunk_entries_splits_one_byte_past_5_mib() -> None:
    exact = [entry(MAX_RECORD_BYTES)] * 4 + [entry(MAX_RECORD_BYTES - 10), entry(10)]
    assert [len(c) for c in chunk_entries(exact)] == [6]
    over = [entry(MAX_RECORD_BYTES)] * 4 + [entry(MAX_RECORD_BYTES - 10), entry(11)]
    assert [len(c) for c in chunk_entries(over)] == [5, 1]


def test_chunk_entries_of_nothing_is_no_call() -> None:
    assert list(chunk_entries([])) == []


def test_chunk_entries_is_greedy_within_both_limits() -> None:
    rng = random.Random(7)
    sizes = [rng.choice([3, 50]) for _ in range(1_200)]
    sizes += [rng.choice([3, 4_000, 200_000, 900_000]) for _ in range(200)]
    entries = [entry(size) for size in sizes]

    chunks = list(chunk_entries(entries))

    assert [e for c in chunks for e in c] == entries
    for current, following in itertools.pairwise(chunks):
        size = sum(e.size for e in current)
        assert 0 < len(current) <= MAX_RECORDS_PER_CALL and size <= MAX_BYTES_PER_CALL
        # Closed only because the next entry would break a limit.
        assert len(current) == MAX_RECORDS_PER_CALL or size + following[0].size > MAX_BYTES_PER_CALL


def test_entries_from_arrow_refuses_a_null_key() -> None:
    batch = pa.RecordBatch.from_pydict(
        {"partitionKey": ["a", None], "data": [b"1", b"2"]},
        schema=pa.schema([("partitionKey", pa.string()), ("data", pa.binary())]),
    )
    with pytest.raises(PutRecordsError, match="null partitionKey or data"):
        list(entries_from_arrow(batch))


# -- RecordPublisher, through the proxy -------------------------------------------------------


def publisher(proxy: KinesisProxy, stream: str, waits: list[float]) -> RecordPublisher:
    # One attempt per call in botocore, so the publisher's own retries are tested.
    client = single_attempt_client(proxy.endpoint_url)
    return RecordPublisher(client, stream, sleep=waits.append)


def as_entries(rows: list[tuple[str, bytes]]) -> list[PutEntry]:
    return [PutEntry(data, key) for key, data in rows]


def test_publisher_writes_in_order_in_calls_of_at_most_500(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    rows = small_rows(1_200)
    waits: list[float] = []
    pub = publisher(proxy, stream, waits)

    assert pub.put(as_entries(rows)) == 1_200

    assert [count for count, _ in proxy.put_calls] == [500, 500, 200]
    assert [size for _, size in proxy.put_calls] == [
        sum(len(k) + len(d) for k, d in rows[i : i + 500]) for i in (0, 500, 1_000)
    ]
    assert (pub.calls, pub.records_written, pub.retried_entries) == (3, 1_200, 0)
    assert waits == []
    assert stored(moto_endpoint, stream) == rows  # one shard: the exact order


def test_publisher_resends_exactly_the_failed_entries(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    rows = small_rows(1_000)
    proxy.fail_put_entries(0.3)
    waits: list[float] = []
    pub = publisher(proxy, stream, waits)

    assert pub.put(as_entries(rows)) == 1_000

    log = proxy.put_log
    # 30% of each call fails: 500 -> 150 -> 45 -> 14 -> 4 -> 1 -> 0, for each of two chunks.
    assert [len(call.entries) for call in log] == [500, 150, 45, 14, 4, 1] * 2
    for call, retry in itertools.pairwise(log):
        if call.failed:
            assert retry.entries == tuple(call.entries[i] for i in call.failed)
    assert pub.calls == len(log)
    assert pub.retried_entries == sum(len(call.failed) for call in log) == 2 * 214
    # Attempt k of a chunk waits uniform in [0, 0.1 * 2**(k-1)].
    bounds = [0.1, 0.2, 0.4, 0.8, 1.6] * 2
    assert len(waits) == len(bounds)
    assert all(0 <= w <= b for w, b in zip(waits, bounds, strict=True))
    assert proxy.put_entries_forwarded == 1_000
    assert multiset(stored(moto_endpoint, stream)) == multiset(rows)


def test_publisher_gives_up_naming_stream_and_error_code(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    proxy.fail_put_entries(1.0, error_code="InternalFailure")
    waits: list[float] = []
    pub = publisher(proxy, stream, waits)

    with pytest.raises(PutRecordsError) as failure:
        pub.put(as_entries(small_rows(7)))

    assert str(failure.value) == (
        f"PutRecords to stream {stream!r}: 7 records still failed after {MAX_PUT_ATTEMPTS} "
        "attempts (InternalFailure)"
    )
    assert [count for count, _ in proxy.put_calls] == [7] * MAX_PUT_ATTEMPTS
    assert len(waits) == MAX_PUT_ATTEMPTS - 1
    assert stored(moto_endpoint, stream) == []


def test_publisher_retries_a_throttled_call(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    rows = small_rows(20)
    proxy.fail("PutRecords", THROTTLED, times=3)
    waits: list[float] = []
    pub = publisher(proxy, stream, waits)

    assert pub.put(as_entries(rows)) == 20

    assert proxy.calls["PutRecords"] == 4 == pub.calls
    assert len(waits) == 3
    assert stored(moto_endpoint, stream) == rows  # written once, in order


def test_publisher_does_not_retry_other_errors(proxy: KinesisProxy) -> None:
    waits: list[float] = []
    pub = publisher(proxy, "no-such-stream", waits)

    with pytest.raises(PutRecordsError, match="'no-such-stream' failed: ResourceNotFoundException"):
        pub.put(as_entries(small_rows(3)))

    assert proxy.calls["PutRecords"] == 1
    assert waits == []


def test_publisher_takes_exactly_1_mib_and_refuses_one_byte_more(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    pub = publisher(proxy, stream, [])

    assert pub.put([entry(MAX_RECORD_BYTES, key="edge")]) == 1
    with pytest.raises(RecordTooLargeError, match=f"{MAX_RECORD_BYTES + 1} bytes"):
        pub.put([entry(MAX_RECORD_BYTES + 1, key="edge")])

    assert proxy.put_calls == [(1, MAX_RECORD_BYTES)]
    assert [len(d) + len(k) for k, d in stored(moto_endpoint, stream)] == [MAX_RECORD_BYTES]


def test_publisher_checks_every_entry_before_the_first_call(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    entries = [*as_entries(small_rows(700)), entry(MAX_RECORD_BYTES + 1, key="late")]
    pub = publisher(proxy, stream, [])

    with pytest.raises(RecordTooLargeError) as failure:
        pub.put(entries)

    assert str(failure.value).endswith(
        f"exceeds the Kinesis limit of {MAX_RECORD_BYTES} bytes (entry 700; nothing of the put "
        "was sent)"
    )
    assert proxy.put_calls == []
    assert stored(moto_endpoint, stream) == []


def arrow_rows(rows: Sequence[tuple[str | None, bytes | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"partitionKey": [k for k, _ in rows], "data": [d for _, d in rows]},
        schema=pa.schema([("partitionKey", pa.string()), ("data", pa.binary())]),
    )


@pytest.mark.parametrize(
    ("bad", "error", "expected"),
    [
        pytest.param(
            ("big", b"z" * MAX_RECORD_BYTES),
            RecordTooLargeError,
            f"a record of {MAX_RECORD_BYTES + 3} bytes (data plus partition key 'big') exceeds "
            f"the Kinesis limit of {MAX_RECORD_BYTES} bytes (row 612 of the task; nothing of the "
            "task was written)",
            id="too-large",
        ),
        pytest.param(
            ("", b"d"),
            PutRecordsError,
            "partition key must be 1 to 256 characters, got 0 ('') (row 612 of the task; "
            "nothing of the task was written)",
            id="empty-key",
        ),
        pytest.param(
            ("é" * 257, b"d"),
            PutRecordsError,
            "partition key must be 1 to 256 characters, got 257",
            id="long-key",
        ),
        pytest.param(
            ("k", None),
            PutRecordsError,
            "a row with a null partitionKey or data (partition key 'k'; row 612 of the task; "
            "nothing of the task was written)",
            id="null-data",
        ),
    ],
)
def test_publisher_checks_every_arrow_batch_before_the_first_call(
    bad: tuple[str | None, bytes | None],
    error: type[Exception],
    expected: str,
    moto_stream: Any,
    moto_endpoint: str,
    proxy: KinesisProxy,
) -> None:
    stream = moto_stream(shards=1)
    rows: list[tuple[str | None, bytes | None]] = list(small_rows(1_000))
    rows[612] = bad
    pub = publisher(proxy, stream, [])

    with pytest.raises(error) as failure:
        pub.put_arrow([arrow_rows(rows[:600]), arrow_rows(rows[600:])])

    assert expected in str(failure.value)
    assert proxy.put_calls == []
    assert stored(moto_endpoint, stream) == []


def test_publisher_fills_calls_across_arrow_batches(
    moto_stream: Any, moto_endpoint: str, proxy: KinesisProxy
) -> None:
    stream = moto_stream(shards=1)
    rows = small_rows(1_000)
    pub = publisher(proxy, stream, [])

    assert pub.put_arrow([arrow_rows(rows[i : i + 300]) for i in range(0, 1_000, 300)]) == 1_000

    assert [count for count, _ in proxy.put_calls] == [500, 500]
    assert stored(moto_endpoint, stream) == rows


@pytest.mark.parametrize("key", ["", "k" * 257])
def test_publisher_refuses_a_bad_partition_key(key: str, proxy: KinesisProxy) -> None:
    pub = publisher(proxy, "any-stream", [])

    with pytest.raises(PutRecordsError, match="partition key must be 1 to 256 characters"):
        pub.put([PutEntry(b"data", key)])

    assert proxy.calls["PutRecords"] == 0


@pytest.mark.kinesis_mock
def test_publisher_partial_failures_against_kinesis_mock(
    kinesis_mock_stream: Any, kinesis_mock_endpoint: str
) -> None:
    stream = kinesis_mock_stream(shards=2)
    rows = small_rows(600, prefix="mock")
    with KinesisProxy(kinesis_mock_endpoint) as mock_proxy:
        mock_proxy.fail_put_entries(0.3)
        pub = publisher(mock_proxy, stream, [])

        assert pub.put(as_entries(rows)) == 600

        log = mock_proxy.put_log
        assert [len(call.entries) for call in log] == [500, 150, 45, 14, 4, 1, 100, 30, 9, 3, 1]
        assert mock_proxy.put_entries_forwarded == 600
        assert mock_proxy.failures == []
    assert multiset(stored(kinesis_mock_endpoint, stream)) == multiset(rows)
