"""A subscriber of the output stream: reads every shard, drops duplicates, filters by RUT.

Polling consumers are independent: any number of subscribers read the same stream, each
with its own iterators, and each sees every record. The sink is at-least-once, so records
are deduplicated by ``record_id`` (the input record's ``<shardId>:<sequenceNumber>``).

>>> for record in Subscriber(kinesis_client(), "enriched", rut="12.345.678-5").records():
...     print(record["rules"])                                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Literal

from streamenrich.kinesis.client import call_with_backoff, list_shards
from streamenrich.reference.rut import normalize_rut

Start = Literal["trim-horizon", "latest"]
# How many record ids are remembered for deduplication (a duplicate comes soon after).
DEDUPE_WINDOW = 1_000_000
# Polling pause when every shard is caught up (GetRecords: 5 calls/s per shard, shared).
IDLE_WAIT_S = 0.5


class Subscriber:
    def __init__(
        self,
        client: Any,
        stream: str,
        *,
        start: Start = "trim-horizon",
        rut: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if start not in ("trim-horizon", "latest"):
            raise ValueError(f"start must be trim-horizon or latest, got {start!r}")
        self._client = client
        self._stream = stream
        self._start = "TRIM_HORIZON" if start == "trim-horizon" else "LATEST"
        self._rut: str | None = None
        if rut is not None:
            self._rut = normalize_rut(rut)
            if self._rut is None:
                raise ValueError("not a valid RUT")
        self._sleep = sleep
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def _iterators(self) -> dict[str, str]:
        iterators = {}
        for shard in list_shards(self._client, self._stream):
            iterators[shard.shard_id] = self._client.get_shard_iterator(
                StreamName=self._stream, ShardId=shard.shard_id, ShardIteratorType=self._start
            )["ShardIterator"]
        return iterators

    def _fresh(self, record_id: str) -> bool:
        if record_id in self._seen:
            self.duplicates += 1
            return False
        self._seen[record_id] = None
        if len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        return True

    def records(self, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """Decoded output records, each once; stops at the tip unless ``follow``."""
        iterators = self._iterators()
        while iterators:
            caught_up = True
            for shard_id, iterator in list(iterators.items()):
                response = call_with_backoff(
                    functools.partial(
                        self._client.get_records, ShardIterator=iterator, Limit=10_000
                    )
                )
                for raw in response["Records"]:
                    if self._rut is not None and raw["PartitionKey"] != self._rut:
                        continue
                    record = json.loads(raw["Data"])
                    if self._fresh(str(record.get("record_id", raw["SequenceNumber"]))):
                        yield record
                next_iterator = response.get("NextShardIterator")
                if next_iterator is None:
                    del iterators[shard_id]  # closed and drained
                else:
                    iterators[shard_id] = next_iterator
                if response["Records"] or response.get("MillisBehindLatest", 0) > 0:
                    caught_up = False
            if caught_up:
                if not follow:
                    return
                self._sleep(IDLE_WAIT_S)
