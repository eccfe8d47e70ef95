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

A row Kinesis would refuse for its size never fails the batch (a bad input is dead-lettered
with a reason; it neither crashes the query nor vanishes):

- a ``matched`` record over 1 MiB (data plus partition key; an event within the limit can
  enrich past it) is published to the dead-letter stream instead, with reason
  ``output_too_large``, and counted as ``dead_letter``, not ``matched``. Its entry has the
  fields of every dead-letter entry (``record_id``, ``reason``, ``data_base64``,
  ``partition_key`` (the canonical RUT), ``source``, ``processed_at``, copied from the refused
  record), and ``data_base64`` holds the refused output record itself: this pass does not
  carry the input's bytes, which ``source`` (stream, shard, sequence number) locates exactly;
- a dead-letter entry that would itself exceed 1 MiB (the base64 of an input near 1 MiB is a
  third larger) carries the first bytes of its ``data_base64`` content that fit, with
  ``data_length`` (the whole content's length in bytes) and ``data_truncated: true``, so a
  reader knows it has a prefix. Entries that fit carry neither field.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamenrich.kinesis.client import shared_client
from streamenrich.kinesis.sink import MAX_RECORD_BYTES, PutEntry, RecordPublisher, record_sizes

STATS_SCHEMA = "kind STRING, key STRING, n BIGINT"
STATS_ARROW_SCHEMA = pa.schema([("kind", pa.string()), ("key", pa.string()), ("n", pa.int64())])
BUCKET, LATENCY, CALLS, RETRIED = "bucket", "latency", "put_calls", "retried_entries"
REROUTED = "rerouted"  # key: the dead-letter reason given to a record of another bucket
OUTPUT_TOO_LARGE = "output_too_large"
DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Delivery:
    """Picklable: stream names and endpoint only; the client is made on the executor."""

    streams: Mapping[str, str]  # bucket -> stream it is published to
    region: str | None = None
    endpoint_url: str | None = None
    latency_bucket_ms: int = 10

    def __post_init__(self) -> None:
        if DEAD_LETTER not in self.streams:
            raise ValueError(
                "Delivery needs a dead_letter stream for the records it cannot publish"
            )

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        client = shared_client(self.region, self.endpoint_url)
        publishers = {b: RecordPublisher(client, s) for b, s in self.streams.items()}
        counts: Counter[str] = Counter()
        rerouted: Counter[str] = Counter()
        arrivals: list[np.ndarray] = []
        for batch in batches:
            buckets = batch.column(batch.schema.get_field_index("bucket"))
            dead: list[PutEntry] = []
            for name, publisher in publishers.items():
                rows = batch.filter(pc.equal(buckets, name)).select(["partitionKey", "data"])
                if not rows.num_rows:
                    continue
                too_large = pc.fill_null(pc.greater(record_sizes(rows), MAX_RECORD_BYTES), False)
                if pc.any(too_large).as_py():
                    refused = rows.filter(too_large)
                    rows = rows.filter(pc.invert(too_large))
                    if name == DEAD_LETTER:
                        dead += [fit_dead_letter(key, data) for key, data in _pairs(refused)]
                    else:
                        dead += [refused_output(key, data) for key, data in _pairs(refused)]
                        counts[name] -= refused.num_rows
                        counts[DEAD_LETTER] += refused.num_rows
                        rerouted[OUTPUT_TOO_LARGE] += refused.num_rows
                if rows.num_rows:
                    publisher.put_arrow([rows])
            if dead:
                publishers[DEAD_LETTER].put(dead)
            values = pc.value_counts(buckets)
            for item in values.to_pylist():
                counts[str(item["values"])] += int(item["counts"])
            arrival = batch.column(batch.schema.get_field_index("approximateArrivalTimestamp"))
            micros = pc.cast(arrival, pa.int64()).to_numpy(zero_copy_only=False)
            arrivals.append(micros // 1000)
        done_ms = int(time.time() * 1000)
        stats = _stats(counts, arrivals, done_ms, self.latency_bucket_ms, publishers.values())
        yield _with_rerouted(stats, rerouted)


def _pairs(rows: pa.RecordBatch) -> Iterator[tuple[str, bytes]]:
    keys = rows.column(0).to_pylist()
    for key, data in zip(keys, rows.column(1).to_pylist(), strict=True):
        yield key, data.encode("utf-8") if isinstance(data, str) else bytes(data)


def refused_output(partition_key: str, output: bytes) -> PutEntry:
    """The dead-letter entry of an output record too large to publish (see the module doc)."""
    record = json.loads(output)
    entry = {
        "record_id": record.get("record_id"),
        "reason": OUTPUT_TOO_LARGE,
        "data_base64": "",
        "partition_key": partition_key,
        "source": record.get("source"),
        "processed_at": record.get("processed_at"),
    }
    return _fitted(entry, output, partition_key)


def fit_dead_letter(partition_key: str, entry_json: bytes) -> PutEntry:
    """A dead-letter entry over the limit, with a prefix of its content that fits."""
    entry: dict[str, Any] = json.loads(entry_json)
    return _fitted(entry, base64.b64decode(entry["data_base64"]), partition_key)


def _fitted(entry: dict[str, Any], content: bytes, partition_key: str) -> PutEntry:
    """``entry`` with ``data_base64`` = ``content``, or its longest prefix that keeps the entry
    within the 1 MiB limit, marked with ``data_length`` and ``data_truncated``."""
    whole = PutEntry(_json({**entry, "data_base64": _b64(content)}), partition_key)
    if whole.size <= MAX_RECORD_BYTES:
        return whole
    empty = {**entry, "data_base64": ""}
    marked = _with_after(empty, "data_base64", data_length=len(content), data_truncated=True)
    shell = PutEntry(_json(marked), partition_key)
    # Base64 takes 4 characters (bytes: the alphabet is ASCII, never escaped) per 3 bytes.
    keep = max(0, (MAX_RECORD_BYTES - shell.size) // 4 * 3)
    fitted = PutEntry(_json({**marked, "data_base64": _b64(content[:keep])}), partition_key)
    if fitted.size > MAX_RECORD_BYTES:  # the other fields alone are over the limit
        raise ValueError(f"dead-letter entry of {entry.get('record_id')!r} cannot fit 1 MiB")
    return fitted


def _with_after(entry: dict[str, Any], after: str, **added: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        out[key] = value
        if key == after:
            out.update(added)
    return out


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _json(entry: dict[str, Any]) -> bytes:
    # Compact and UTF-8, like the entries Spark's to_json writes.
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_rerouted(stats: pa.RecordBatch, rerouted: Counter[str]) -> pa.RecordBatch:
    if not rerouted:
        return stats
    extra = sorted(rerouted.items())
    more = pa.RecordBatch.from_arrays(
        [
            pa.array([REROUTED] * len(extra), pa.string()),
            pa.array([k for k, _ in extra], pa.string()),
            pa.array([n for _, n in extra], pa.int64()),
        ],
        schema=STATS_ARROW_SCHEMA,
    )
    return pa.Table.from_batches([stats, more]).combine_chunks().to_batches()[0]


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
    # Records of another bucket dead-lettered by the delivery, by reason (output_too_large).
    rerouted: dict[str, int] = field(default_factory=dict)

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
            elif kind == REROUTED:
                stats.rerouted[key] = stats.rerouted.get(key, 0) + n
        return stats
