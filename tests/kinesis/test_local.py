"""The local Kinesis endpoints the project starts (moto by default, kinesis-mock)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.local import LocalServerError, free_port, start_local_kinesis
from tests.support import drain


def test_concurrent_writers_to_one_shard_lose_nothing(endpoint: str, new_stream: Any) -> None:
    # Released moto loses records here (duplicate sequence numbers); ours must not.
    stream = new_stream(shards=1)
    acked: list[str] = []
    lock = threading.Lock()

    def writer(tag: int) -> None:
        client = kinesis_client(endpoint_url=endpoint)
        for call in range(5):
            response = client.put_records(
                StreamName=stream,
                Records=[{"PartitionKey": f"{tag}-{call}-{i}", "Data": b"x"} for i in range(200)],
            )
            assert response["FailedRecordCount"] == 0
            with lock:
                acked.extend(r["SequenceNumber"] for r in response["Records"])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = drain(kinesis_client(endpoint_url=endpoint), stream)
    assert len(acked) == len(set(acked)) == 4_000
    assert sorted(r["SequenceNumber"] for r in stored) == sorted(acked)


def test_busy_port_gives_a_clear_error(moto_endpoint: str) -> None:
    port = int(moto_endpoint.rsplit(":", 1)[1])
    with pytest.raises(LocalServerError, match=f"port 127.0.0.1:{port} is already in use"):
        start_local_kinesis("moto", port)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(LocalServerError, match="unknown engine 'dynamo'"):
        start_local_kinesis("dynamo", free_port())  # type: ignore[arg-type]


def test_start_and_stop_moto_on_a_free_port() -> None:
    server = start_local_kinesis("moto", free_port())
    try:
        client = kinesis_client(endpoint_url=server.endpoint_url)
        assert client.list_streams()["StreamNames"] == []
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_sequence_bounds_in_constant_time_are_moto_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.kinesis import models

    from streamenrich.kinesis.moto_server import _constant_time_sequence_bounds

    released = models.Shard.get_min_sequence_number, models.Shard.get_max_sequence_number
    # monkeypatch puts moto's own methods back after the test.
    monkeypatch.setattr(models.Shard, "get_min_sequence_number", released[0])
    monkeypatch.setattr(models.Shard, "get_max_sequence_number", released[1])
    shard = models.Shard(0, 0, 2**128)
    expected_empty = (released[0](shard), released[1](shard))
    for _ in range(3):
        shard.put_record("k", "eA==", None)
    expected = (released[0](shard), released[1](shard))
    _constant_time_sequence_bounds()
    assert (shard.get_min_sequence_number(), shard.get_max_sequence_number()) == expected == (1, 3)
    assert shard.put_record("k", "eA==", None) == "4"
    assert list(shard.records) == [1, 2, 3, 4]
    empty = models.Shard(1, 0, 2**128)
    assert (empty.get_min_sequence_number(), empty.get_max_sequence_number()) == expected_empty
    assert expected_empty == (0, 0)


def test_the_server_numbers_records_in_order_across_calls(
    moto_endpoint: str, moto_stream: Any
) -> None:
    stream = moto_stream(shards=1)
    client = kinesis_client(endpoint_url=moto_endpoint)
    acked: list[int] = []
    for _ in range(3):
        response = client.put_records(
            StreamName=stream, Records=[{"PartitionKey": "k", "Data": b"%d" % i} for i in range(50)]
        )
        acked += [int(r["SequenceNumber"]) for r in response["Records"]]
    assert acked == list(range(acked[0], acked[0] + 150))
    shard = client.list_shards(StreamName=stream)["Shards"][0]
    assert int(shard["SequenceNumberRange"]["StartingSequenceNumber"]) == acked[0]
    assert [int(r["SequenceNumber"]) for r in drain(client, stream)] == acked
