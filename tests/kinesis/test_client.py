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
