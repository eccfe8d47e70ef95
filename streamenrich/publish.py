"""Publish records to a stream from plain Python: the producer's Kinesis side.

``PutRecords`` in calls of at most 500 records (:class:`~streamenrich.kinesis.sink.
RecordPublisher`: within the Kinesis limits, failed entries retried alone), optionally at
a steady rate, reporting progress after every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from streamenrich.kinesis.sink import MAX_RECORDS_PER_CALL, PutEntry, RecordPublisher


@dataclass(frozen=True)
class PublishReport:
    stream: str
    records: int
    calls: int
    retried_entries: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _batches(records: Iterable[tuple[str, bytes]], size: int) -> Iterator[list[PutEntry]]:
    batch: list[PutEntry] = []
    for key, data in records:
        batch.append(PutEntry(data, key))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def publish_events(
    client: Any,
    stream: str,
    records: Iterable[tuple[str, bytes]],
    *,
    rate_per_s: float | None = None,
    batch_size: int = MAX_RECORDS_PER_CALL,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishReport:
    """Put every ``(partition_key, data)`` record; returns when all are stored.

    With ``rate_per_s`` the records go out in small calls paced to that rate (a call every
    ``batch_size / rate`` seconds at most). Raises
    :class:`~streamenrich.kinesis.errors.PutRecordsError` if records cannot be stored.
    """
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    if rate_per_s is not None:
        # Ten calls a second at most, so pacing stays smooth.
        batch_size = max(1, min(batch_size, int(rate_per_s / 10) or 1))
    publisher = RecordPublisher(client, stream)
    started = clock()
    sent = 0
    for batch in _batches(records, batch_size):
        if rate_per_s is not None:
            due = started + sent / rate_per_s
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        sent += publisher.put(batch)
        if on_progress is not None:
            on_progress(sent)
    return PublishReport(
        stream=stream,
        records=sent,
        calls=publisher.calls,
        retried_entries=publisher.retried_entries,
        seconds=clock() - started,
    )


def registry_ruts(path: str) -> list[str]:
    """The canonical RUTs of a registry file (CSV or Parquet), without Spark.

    The producer draws its "known" people from them. Invalid RUTs are skipped here: the
    registry's validation is where they are reported.
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from streamenrich.reference.rut import normalize_rut

    if path.endswith(".parquet"):
        column = pq.read_table(path, columns=["rut"]).column("rut")
    else:
        options = pa_csv.ConvertOptions(include_columns=["rut"], column_types={"rut": "string"})
        column = pa_csv.read_csv(path, convert_options=options).column("rut")
    canonical = (normalize_rut(v) for v in column.to_pylist())
    return [rut for rut in canonical if rut is not None]
