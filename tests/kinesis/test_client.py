"""The boto3 side against real endpoints: shard listing, lineage, client configuration."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client, list_shards


def _get_records_waiting_out_throttling(client: Any, iterator: str) -> Any:
    """GetRecords (Limit 100), waiting a fifth of a second (5 calls/s per shard) when
    throttled."""
    from botocore.exceptions import ClientError

    while True:
        try:
            return client.get_records(ShardIterator=iterator, Limit=100)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ProvisionedThroughputExceededException":
                raise
            time.sleep(0.2)


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


def test_epoch_to_utc_gives_aware_utc_datetimes() -> None:
    from datetime import UTC, datetime, timedelta

    from streamenrich.kinesis.client import epoch_to_utc

    assert epoch_to_utc(0) == datetime(1970, 1, 1, tzinfo=UTC)
    stamp = epoch_to_utc(1764672000.125)
    assert stamp == datetime(2025, 12, 2, 10, 40, 0, 125000, tzinfo=UTC)
    assert stamp.utcoffset() == timedelta(0)
    # Text goes to botocore's parser, which keeps the zone it names.
    text = epoch_to_utc("2026-12-02T10:00:00-03:00")
    assert text == datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    assert text.utcoffset() == timedelta(hours=-3)
    assert epoch_to_utc("2026-12-02T10:00:00Z").tzinfo is not None
    assert epoch_to_utc(datetime(2026, 1, 1, tzinfo=UTC).timestamp()).year == 2026


def test_arrival_timestamps_are_the_instants_boto3s_default_client_gives(
    endpoint: str, new_stream: Any
) -> None:
    import boto3

    stream = new_stream(shards=1)
    client = kinesis_client(endpoint_url=endpoint)
    for i in range(5):
        client.put_record(StreamName=stream, Data=b"%d" % i, PartitionKey="k")
    default = boto3.client("kinesis", region_name="us-east-1", endpoint_url=endpoint)

    def arrivals(reader: Any) -> list[Any]:
        iterator = reader.get_shard_iterator(
            StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        # As on AWS, a fresh iterator may return empty pages behind the tip first.
        while True:
            page = _get_records_waiting_out_throttling(reader, iterator)
            if page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                return [r["ApproximateArrivalTimestamp"] for r in page["Records"]]
            iterator = page["NextShardIterator"]

    ours, theirs = arrivals(client), arrivals(default)
    assert len(ours) == len(theirs) == 5
    assert ours == theirs  # aware datetimes compare as instants
    assert [s.timestamp() for s in ours] == [s.timestamp() for s in theirs]
    assert all(s.utcoffset() == timedelta(0) for s in ours)
