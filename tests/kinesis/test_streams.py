"""Provisioning streams against both engines: create, check, idempotence, wrong states."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.streams import StreamStateError, ensure_stream, wait_for_active


def test_create_then_check_changes_nothing(endpoint: str) -> None:
    client = kinesis_client(endpoint_url=endpoint)
    name = f"prov-{uuid.uuid4().hex[:8]}"
    try:
        first = ensure_stream(client, name, 3, retention_hours=48)
        assert first.created and first.open_shards == 3 and first.status == "ACTIVE"
        assert first.retention_hours == 48
        assert first.changes == ("created with 3 shards", "retention 24h -> 48h")
        second = ensure_stream(client, name, 3, retention_hours=48)
        assert not second.created and second.changes == ()
        assert second.arn == first.arn
    finally:
        client.delete_stream(StreamName=name)


def test_wrong_shard_count_is_a_clear_error(endpoint: str, new_stream: Any) -> None:
    name = new_stream(shards=2)
    with pytest.raises(StreamStateError, match=f"stream '{name}' has 2 open shards, configured 4"):
        ensure_stream(kinesis_client(endpoint_url=endpoint), name, 4)


def test_missing_stream_while_waiting(endpoint: str) -> None:
    with pytest.raises(StreamStateError, match="does not exist"):
        wait_for_active(kinesis_client(endpoint_url=endpoint), "no-such-stream", 1)
