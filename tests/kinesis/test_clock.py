"""A start ahead of the server's clock (kinesis-mock only: it refuses such an iterator).

The source pins a ``LATEST`` start to the query's start time on the client, and an
``AT_TIMESTAMP`` start may be any time. When the server's clock is behind that time,
``GetShardIterator(AT_TIMESTAMP)`` fails with ``InvalidArgumentException: Timestamp cannot
be in the future``. It means no record at or after the start exists yet, so the probe and
the read see an empty shard and keep the position; the query goes on. (CI once hit this
with kinesis-mock's clock running behind the machine's: the query failed.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.shard_reader import ShardReader, ShardReadPlan
from tests.support import (
    BatchCollector,
    iso_millis,
    put_all,
    read_stream,
    server_clock_lag_s,
)

pytestmark = pytest.mark.kinesis_mock

AHEAD_S = 4.0


def records(tag: str, n: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}", json.dumps({"tag": tag, "i": i}).encode()) for i in range(n)]


def test_reader_sees_an_empty_shard_before_a_future_start(
    kinesis_mock_endpoint: str, kinesis_mock_stream: Any
) -> None:
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(1, prefix="clock")
    put_all(client, stream, records("early", 10))
    server_now_s = time.time() - server_clock_lag_s(client, stream)
    start = ShardPosition.at_timestamp(int((server_now_s + 60) * 1000))
    plan = ShardReadPlan(
        stream_name=stream,
        shard_id="shardId-000000000000",
        start=start,
        max_records=None,
        max_fetch_time_ms=1_000,
        cutoff_ms=None,
        replay=None,
    )
    reader = ShardReader(client, plan)

    assert list(reader.batches()) == []
    assert reader.result is not None
    assert (reader.result.count, reader.result.first, reader.result.last) == (0, None, None)
    assert reader.result.caught_up and not reader.result.closed


def test_query_started_ahead_of_the_server_clock_reads_what_comes_after(
    spark: Any, kinesis_mock_endpoint: str, kinesis_mock_stream: Any, tmp_path: Path
) -> None:
    client = kinesis_client(endpoint_url=kinesis_mock_endpoint)
    stream = kinesis_mock_stream(2, prefix="clock")
    lag = server_clock_lag_s(client, kinesis_mock_stream(1, prefix="clock"))
    start_s = time.time() - lag + AHEAD_S  # on the server's clock
    put_all(client, stream, records("early", 40))

    collector = BatchCollector()
    query = (
        read_stream(
            spark,
            {
                "streamName": stream,
                "endpointUrl": kinesis_mock_endpoint,
                "metadataPath": str(tmp_path / "metadata"),
                "startingPosition": f"AT_TIMESTAMP:{iso_millis(start_s)}",
            },
        )
        .writeStream.foreachBatch(collector)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        # Triggers while the start is still ahead of the server: probes are refused.
        deadline = time.monotonic() + 60
        while query.lastProgress is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert query.exception() is None
        wait_s = start_s + lag + 0.3 - time.time()
        time.sleep(max(0.0, wait_s))
        put_all(client, stream, records("late", 40))
        deadline = time.monotonic() + 60
        while len(collector.rows) < 40 and time.monotonic() < deadline:
            assert query.exception() is None
            time.sleep(0.2)
        query.processAllAvailable()
        assert query.exception() is None
    finally:
        query.stop()

    got = sorted(json.loads(bytes(row.data))["i"] for row in collector.rows)
    tags = {json.loads(bytes(row.data))["tag"] for row in collector.rows}
    assert (tags, got) == ({"late"}, list(range(40)))
