"""Baseline 1, the ceiling: plain boto3 copying the matched share, with no enrichment at all.

Every shard is drained with ``GetRecords`` (10,000 records a call, the API's maximum) on its
own thread, and the records known in advance to match (by their bytes) are written back to the
output stream with ``PutRecords`` (500 a call, the API's maximum). Nothing is parsed, joined
or evaluated: this is what moving the bytes costs on this endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamenrich.kinesis.client import list_shards

# GetRecords returns at most 10,000 records per call; PutRecords takes at most 500.
GET_RECORDS_MAX = 10_000
PUT_RECORDS_MAX = 500


@dataclass(frozen=True)
class CopyResult:
    records_read: int
    records_written: int
    get_calls: int
    put_calls: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records_read / self.seconds if self.seconds > 0 else 0.0


def put_all(client: Any, stream: str, entries: list[dict[str, Any]]) -> int:
    """PutRecords in calls of 500, sending failed entries again; returns the calls made."""
    calls = 0
    for start in range(0, len(entries), PUT_RECORDS_MAX):
        pending = entries[start : start + PUT_RECORDS_MAX]
        while pending:
            calls += 1
            response = client.put_records(StreamName=stream, Records=pending)
            if not response.get("FailedRecordCount"):
                break
            pending = [
                e for e, r in zip(pending, response["Records"], strict=True) if r.get("ErrorCode")
            ]
    return calls


def _copy_shard(
    client: Any, source: str, shard_id: str, routes: Mapping[str, frozenset[bytes]]
) -> tuple[int, int, int, int]:
    iterator = client.get_shard_iterator(
        StreamName=source, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    read = written = get_calls = put_calls = 0
    while iterator:
        response = client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_MAX)
        get_calls += 1
        records = response["Records"]
        read += len(records)
        for target, selected in routes.items():
            entries = [
                {"Data": r["Data"], "PartitionKey": r["PartitionKey"]}
                for r in records
                if r["Data"] in selected
            ]
            put_calls += put_all(client, target, entries)
            written += len(entries)
        if not records and response.get("MillisBehindLatest", 0) == 0:
            break  # drained: the stream was loaded before the copy started
        iterator = response.get("NextShardIterator")
    return read, written, get_calls, put_calls


def copy_matched(
    new_client: Callable[[], Any],
    source: str,
    target: str,
    selected: frozenset[bytes],
    *,
    also: Mapping[str, frozenset[bytes]] | None = None,
) -> CopyResult:
    """Drain ``source`` (every shard in parallel) and write the ``selected`` records to
    ``target`` (and each set in ``also`` to its stream); timed from the first ``ListShards``
    to the last ``PutRecords``."""
    routes = {target: selected, **(also or {})}
    started = time.perf_counter()
    shards = list_shards(new_client(), source)
    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        futures = [
            pool.submit(_copy_shard, new_client(), source, shard.shard_id, routes)
            for shard in shards
        ]
        totals = [sum(values) for values in zip(*(f.result() for f in futures), strict=True)]
    seconds = time.perf_counter() - started
    return CopyResult(totals[0], totals[1], totals[2], totals[3], seconds)
