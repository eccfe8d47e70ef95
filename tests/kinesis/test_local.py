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
