"""The boto3 side against real endpoints: shard listing, lineage, client configuration."""

from __future__ import annotations

from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client, list_shards


@pytest.mark.parametrize("page_size", [1, 2, 3, None])
def test_list_shards_pages_through_every_shard(
    endpoint: str, new_stream: Any, page_size: int | None
) -> None:
    stream = new_stream(shards=7)
    client = kinesis_client(endpoint_url=endpoint)
    expected = sorted(
        s["ShardId"]
        for s in client.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    )
    shards = list_shards(client, stream, page_size=page_size)
    assert [s.shard_id for s in shards] == expected
    assert all(not s.is_closed and s.parents == () for s in shards)


def test_client_honours_the_standard_endpoint_variable(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, moto_stream: Any
) -> None:
    stream = moto_stream(shards=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", moto_endpoint)
    client = kinesis_client()
    assert client.meta.endpoint_url == moto_endpoint
    assert [s.shard_id for s in list_shards(client, stream)] == ["shardId-000000000000"]
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}


def test_transient_errors_are_told_apart_from_final_ones() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from streamenrich.kinesis.client import is_transient
    from streamenrich.kinesis.errors import KinesisCallError

    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutRecords")

    assert is_transient(client_error("ProvisionedThroughputExceededException"))
    assert is_transient(client_error("ServiceUnavailable"))
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert not is_transient(client_error("AccessDeniedException"))
    assert not is_transient(client_error("ResourceNotFoundException"))
    assert not is_transient(ValueError("bad"))
    assert not is_transient(None)
    try:
        try:
            raise client_error("LimitExceededException")
        except ClientError as exc:
            raise KinesisCallError("ListShards failed") from exc
    except KinesisCallError as wrapped:
        assert is_transient(wrapped)


def test_a_start_ahead_of_the_server_is_told_apart_from_other_bad_arguments() -> None:
    from botocore.exceptions import ClientError

    from streamenrich.kinesis.client import is_future_timestamp

    def refused(message: str, code: str = "InvalidArgumentException") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "GetShardIterator")

    future = refused("Timestamp cannot be in the future")
    assert is_future_timestamp(future, "AT_TIMESTAMP")
    assert not is_future_timestamp(future, "AT_SEQUENCE_NUMBER")
    assert not is_future_timestamp(refused("StartingSequenceNumber is invalid"), "AT_TIMESTAMP")
    assert not is_future_timestamp(refused("future", "AccessDeniedException"), "AT_TIMESTAMP")
    assert not is_future_timestamp(ValueError("future"), "AT_TIMESTAMP")
