"""Publishing a classified micro-batch and counting it, in the same pass (one Spark job).

:class:`Delivery` is a ``mapInArrow`` function over :func:`~streamenrich.enrich.classify`'s
rows: each task writes its ``matched`` rows to the output stream and its ``dead_letter`` rows
to the dead-letter stream (PutRecords through :class:`~streamenrich.kinesis.sink.
RecordPublisher`: chunks within the limits, failed entries retried, a batch failed rather
than a record dropped), and returns a few rows of statistics: the count of every bucket, the
PutRecords calls, and a histogram of latencies (arrival in the input stream to the moment the
task's writes were acknowledged). The driver collects those rows: the counts of a micro-batch
come from the very pass that published it, and only from tasks that succeeded.

At-least-once, like the sink: a retried task publishes its rows again (subscribers drop
duplicates by ``record_id``); its statistics are counted once, since Spark keeps only the
successful attempt's output.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamenrich.kinesis.client import shared_client
from streamenrich.kinesis.sink import RecordPublisher, entries_from_arrow

STATS_SCHEMA = "kind STRING, key STRING, n BIGINT"
STATS_ARROW_SCHEMA = pa.schema([("kind", pa.string()), ("key", pa.string()), ("n", pa.int64())])
BUCKET, LATENCY, CALLS, RETRIED = "bucket", "latency", "put_calls", "retried_entries"


@dataclass(frozen=True)
class Delivery:
    """Picklable: stream names and endpoint only; the client is made on the executor."""

    streams: Mapping[str, str]  # bucket -> stream it is published to
    region: str | None = None
    endpoint_url: str | None = None
    latency_bucket_ms: int = 10

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        client = shared_client(self.region, self.endpoint_url)
        publishers = {b: RecordPublisher(client, s) for b, s in self.streams.items()}
        counts: Counter[str] = Counter()
        arrivals: list[np.ndarray] = []
        for batch in batches:
            buckets = batch.column(batch.schema.get_field_index("bucket"))
            for name, publisher in publishers.items():
                rows = batch.filter(pc.equal(buckets, name))
                if rows.num_rows:
                    publisher.put(entries_from_arrow(rows.select(["partitionKey", "data"])))
            values = pc.value_counts(buckets)
            for item in values.to_pylist():
                counts[str(item["values"])] += int(item["counts"])
            arrival = batch.column(batch.schema.get_field_index("approximateArrivalTimestamp"))
            micros = pc.cast(arrival, pa.int64()).to_numpy(zero_copy_only=False)
            arrivals.append(micros // 1000)
        done_ms = int(time.time() * 1000)
        yield _stats(counts, arrivals, done_ms, self.latency_bucket_ms, publishers.values())


def _stats(
    counts: Counter[str],
    arrivals: list[np.ndarray],
    done_ms: int,
    width_ms: int,
    publishers: Iterable[RecordPublisher],
) -> pa.RecordBatch:
    rows: list[tuple[str, str, int]] = [(BUCKET, k, v) for k, v in sorted(counts.items())]
    if arrivals:
        waited = np.maximum(done_ms - np.concatenate(arrivals), 0) // width_ms
        slots, hits = np.unique(waited, return_counts=True)
        rows += [(LATENCY, str(int(s)), int(h)) for s, h in zip(slots, hits, strict=True)]
    for publisher in publishers:
        rows += [(CALLS, publisher.stream, publisher.calls)]
        rows += [(RETRIED, publisher.stream, publisher.retried_entries)]
    kinds, keys, ns = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.RecordBatch.from_arrays(
        [pa.array(kinds, pa.string()), pa.array(keys, pa.string()), pa.array(ns, pa.int64())],
        schema=STATS_ARROW_SCHEMA,
    )


@dataclass
class DeliveryStats:
    """The collected statistics of one micro-batch."""

    counts: dict[str, int] = field(default_factory=dict)
    latency: Counter[int] = field(default_factory=Counter)
    put_calls: dict[str, int] = field(default_factory=dict)
    retried_entries: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, int]]) -> DeliveryStats:
        stats = cls()
        for kind, key, n in rows:
            if kind == BUCKET:
                stats.counts[key] = stats.counts.get(key, 0) + n
            elif kind == LATENCY:
                stats.latency[int(key)] += n
            elif kind == CALLS:
                stats.put_calls[key] = stats.put_calls.get(key, 0) + n
            elif kind == RETRIED:
                stats.retried_entries[key] = stats.retried_entries.get(key, 0) + n
        return stats
