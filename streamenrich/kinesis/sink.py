"""The ``kinesis`` Spark sink: ``PutRecords`` in chunks within the Kinesis limits.

At-least-once: a failed task is retried by Spark and a failed batch is replayed, so a
record can be written twice; subscribers drop duplicates by a key carried in the data
(``record_id`` in streamenrich's output). A record is never dropped: entries that still
fail after the retries, or that break a limit, fail the batch with the reason.

A row that breaks a limit (a null key or data, a partition key outside 1..256 characters, more
than 1 MiB of data plus key) is found before the first ``PutRecords`` call of its task, so the
task fails having sent nothing: a retry cannot pile up duplicates of the rows before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from streamenrich.kinesis.client import THROTTLING_CODES, backoff_delay, error_code
from streamenrich.kinesis.errors import PutRecordsError, RecordTooLargeError, SchemaError

# PutRecords takes at most 500 records and 5 MiB per call (data plus partition keys).
MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
# A record's data plus its partition key may be at most 1 MiB.
MAX_RECORD_BYTES = 1024 * 1024
# Partition keys are 1 to 256 Unicode characters.
MAX_PARTITION_KEY_CHARS = 256
# Failed entries are retried this many times, with backoff, before the batch fails.
MAX_PUT_ATTEMPTS = 10

REQUIRED_COLUMNS = ("partitionKey", "data")
OPTIONAL_COLUMNS = ("explicitHashKey",)


def check_sink_schema(fields: Iterable[tuple[str, str]]) -> None:
    """Accept ``partitionKey STRING``, ``data BINARY|STRING`` and ``explicitHashKey STRING``.

    ``fields`` are ``(name, spark simple type name)`` pairs. Raises :class:`SchemaError` naming
    the first offending column.
    """
    seen: dict[str, str] = {}
    for name, type_name in fields:
        if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise SchemaError(
                f"column '{name}' is not accepted by the kinesis sink; expected partitionKey "
                "STRING, data BINARY or STRING, and optionally explicitHashKey STRING"
            )
        allowed = ("binary", "string") if name == "data" else ("string",)
        if type_name not in allowed:
            raise SchemaError(
                f"column '{name}' has type {type_name}; the kinesis sink needs "
                f"{' or '.join(t.upper() for t in allowed)}"
            )
        seen[name] = type_name
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            raise SchemaError(f"column '{name}' is required by the kinesis sink")


@dataclass(frozen=True)
class PutEntry:
    data: bytes
    partition_key: str
    explicit_hash_key: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode("utf-8"))

    def to_api(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"Data": self.data, "PartitionKey": self.partition_key}
        if self.explicit_hash_key:
            entry["ExplicitHashKey"] = self.explicit_hash_key
        return entry


def validate_entry(entry: PutEntry, stream_name: str, where: str = "") -> None:
    """Raise if Kinesis would refuse ``entry``; ``where`` (e.g. ``row 7 of the task``) is added
    to the message to say which row it is."""
    at = f" ({where})" if where else ""
    if not entry.partition_key or len(entry.partition_key) > MAX_PARTITION_KEY_CHARS:
        raise PutRecordsError(
            f"stream {stream_name!r}: partition key must be 1 to {MAX_PARTITION_KEY_CHARS} "
            f"characters, got {len(entry.partition_key or '')} "
            f"({entry.partition_key[:40]!r}){at}"
        )
    if entry.size > MAX_RECORD_BYTES:
        raise RecordTooLargeError(
            f"stream {stream_name!r}: a record of {entry.size} bytes (data plus partition key "
            f"{entry.partition_key!r}) exceeds the Kinesis limit of {MAX_RECORD_BYTES} bytes{at}"
        )


def record_sizes(batch: pa.RecordBatch) -> pa.Int64Array:
    """Per row of a sink batch: bytes of data plus partition key, what the 1 MiB limit counts
    (null where either is null)."""
    keys = batch.column(batch.schema.get_field_index("partitionKey"))
    data = batch.column(batch.schema.get_field_index("data"))
    return pc.add(
        pc.cast(pc.binary_length(keys), pa.int64()), pc.cast(pc.binary_length(data), pa.int64())
    )


def refused_rows(batch: pa.RecordBatch) -> pa.BooleanArray:
    """Per row of a sink batch: would Kinesis refuse it (null key or data, a partition key
    outside 1..256 characters, data plus key over 1 MiB)? Computed on the Arrow columns, with
    no copy of the data into Python."""
    chars = pc.utf8_length(batch.column(batch.schema.get_field_index("partitionKey")))
    refused = pc.or_(
        pc.or_(pc.less(chars, 1), pc.greater(chars, MAX_PARTITION_KEY_CHARS)),
        pc.greater(record_sizes(batch), MAX_RECORD_BYTES),
    )
    # A null anywhere (key or data) leaves the comparison null: refused too.
    return pc.fill_null(refused, True)


def check_rows(batches: Sequence[pa.RecordBatch], stream_name: str) -> int:
    """Check every row of ``batches`` against the Kinesis limits; return how many there are.

    Raises on the first row that would be refused (:class:`RecordTooLargeError` or
    :class:`PutRecordsError`), naming its position among all the rows and its partition key.
    """
    position = 0
    for batch in batches:
        refused = refused_rows(batch)
        if pc.any(refused).as_py():
            index = pc.index(refused, True).as_py()
            row = batch.slice(index, 1)
            where = f"row {position + index} of the task; nothing of the task was written"
            key = row.column(row.schema.get_field_index("partitionKey"))[0].as_py()
            if key is None or row.column(row.schema.get_field_index("data")).null_count:
                raise PutRecordsError(
                    f"stream {stream_name!r}: a row with a null partitionKey or data "
                    f"(partition key {key!r}; {where})"
                )
            validate_entry(next(entries_from_arrow(row)), stream_name, where)
        position += batch.num_rows
    return position


def chunk_entries(entries: Iterable[PutEntry]) -> Iterator[list[PutEntry]]:
    """Group entries into PutRecords calls of at most 500 records and 5 MiB, in order."""
    chunk: list[PutEntry] = []
    size = 0
    for entry in entries:
        if chunk and (len(chunk) == MAX_RECORDS_PER_CALL or size + entry.size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


class RecordPublisher:
    """Writes entries to one stream; :meth:`put` returns only when every entry is stored."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        max_attempts: int = MAX_PUT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._stream = stream_name
        self._max_attempts = max_attempts
        self._sleep = sleep
        self.records_written = 0
        self.calls = 0
        self.retried_entries = 0

    @property
    def stream(self) -> str:
        return self._stream

    def put(self, entries: Iterable[PutEntry]) -> int:
        """Write all entries in order; return how many were written. Raises on any loss.

        Every entry is checked before the first call: one that Kinesis would refuse raises
        (naming its position) with nothing of ``entries`` sent.
        """
        pending = list(entries)
        for position, entry in enumerate(pending):
            validate_entry(entry, self._stream, f"entry {position}; nothing of the put was sent")
        return self._send(pending)

    def put_arrow(self, batches: Sequence[pa.RecordBatch]) -> int:
        """Write every row of ``batches`` (columns ``partitionKey``, ``data`` and optionally
        ``explicitHashKey``) in order; return how many were written.

        All the rows are checked (:func:`check_rows`) before the first call, so a row that
        Kinesis would refuse raises with nothing sent. The rows stay in Arrow until their
        chunk is sent; calls are filled across batch boundaries.
        """
        check_rows(batches, self._stream)
        return self._send(entry for batch in batches for entry in entries_from_arrow(batch))

    def _send(self, entries: Iterable[PutEntry]) -> int:
        written = 0
        for chunk in chunk_entries(entries):
            self._put_chunk(chunk)
            written += len(chunk)
        self.records_written += written
        return written

    def _put_chunk(self, chunk: list[PutEntry]) -> None:
        pending = chunk
        last_errors: list[str] = []
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(backoff_delay(attempt - 1))
            try:
                self.calls += 1
                response = self._client.put_records(
                    StreamName=self._stream, Records=[e.to_api() for e in pending]
                )
            except ClientError as exc:
                if error_code(exc) in THROTTLING_CODES:
                    last_errors = [str(error_code(exc))]
                    continue
                raise PutRecordsError(
                    f"PutRecords to stream {self._stream!r} failed: {error_code(exc)}: {exc}"
                ) from exc
            if not response.get("FailedRecordCount"):
                return
            results = response["Records"]
            failed = [e for e, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
            last_errors = sorted({str(r["ErrorCode"]) for r in results if r.get("ErrorCode")})
            self.retried_entries += len(failed)
            pending = failed
        raise PutRecordsError(
            f"PutRecords to stream {self._stream!r}: {len(pending)} records still failed after "
            f"{self._max_attempts} attempts ({', '.join(last_errors) or 'unknown error'})"
        )


def entries_from_arrow(batch: pa.RecordBatch) -> Iterator[PutEntry]:
    """The sink's input rows as entries; a null key or data is an error, never skipped."""
    columns = batch.schema.names
    keys = batch.column(columns.index("partitionKey")).to_pylist()
    data = batch.column(columns.index("data")).to_pylist()
    hashes = (
        batch.column(columns.index("explicitHashKey")).to_pylist()
        if "explicitHashKey" in columns
        else [None] * len(keys)
    )
    for key, payload, hash_key in zip(keys, data, hashes, strict=True):
        if key is None or payload is None:
            raise PutRecordsError("the kinesis sink got a row with a null partitionKey or data")
        raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        yield PutEntry(raw, key, hash_key)
