"""Publishing from plain Python: every record stored once, progress reported, rate kept."""

from __future__ import annotations

import time
from typing import Any

from streamenrich.kinesis.client import kinesis_client
from streamenrich.publish import publish_events
from tests.support import drain, multiset


def test_every_record_is_stored_and_progress_reported(moto_endpoint: str, moto_stream: Any) -> None:
    stream = moto_stream(shards=2)
    records = [(f"k{i % 13}", f"event-{i}".encode()) for i in range(1_234)]
    progress: list[int] = []
    report = publish_events(
        kinesis_client(endpoint_url=moto_endpoint), stream, records, on_progress=progress.append
    )
    assert (report.records, report.calls) == (1_234, 3)
    assert progress == [500, 1_000, 1_234]
    stored = drain(kinesis_client(endpoint_url=moto_endpoint), stream)
    assert multiset((r["PartitionKey"], r["Data"]) for r in stored) == multiset(records)


def test_rate_paces_the_calls(moto_endpoint: str, moto_stream: Any) -> None:
    stream = moto_stream(shards=1)
    records = [("k", b"x")] * 300
    started = time.monotonic()
    report = publish_events(
        kinesis_client(endpoint_url=moto_endpoint), stream, records, rate_per_s=300.0
    )
    # 300 records at 300/s: calls of 30 records, the last due at 0.9 s.
    assert report.calls == 10
    assert time.monotonic() - started >= 0.9
