"""The ``kinesis`` Spark sink: ``PutRecords`` in chunks within the Kinesis limits.

At-least-once: a failed task is retried by Spark and a failed batch is replayed, so a
record can be written twice; subscribers drop duplicates by a key carried in the data
(``record_id`` in streamenrich's output). A record is never dropped: entries that still
fail after the retries, or that break a limit, fail the batch with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
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


def validate_entry(entry: PutEntry, stream_name: str) -> None:
    if not entry.partition_key or len(entry.partition_key) > MAX_PARTITION_KEY_CHARS:
        raise PutRecordsError(
            f"stream {stream_name!r}: partition key must be 1 to {MAX_PARTITION_KEY_CHARS} "
            f"characters, got {len(entry.partition_key or '')}"
        )
    if entry.size > MAX_RECORD_BYTES:
        raise RecordTooLargeError(
            f"stream {stream_name!r}: a record of {entry.size} bytes (data plus partition key "
            f"{entry.partition_key!r}) exceeds the Kinesis limit of {MAX_RECORD_BYTES} bytes"
        )


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
        """Write all entries; returns how many were written. Raises on any loss."""
        written = 0
        for chunk in chunk_entries(self._validated(entries)):
            self._put_chunk(chunk)
            written += len(chunk)
        self.records_written += written
        return written

    def _validated(self, entries: Iterable[PutEntry]) -> Iterator[PutEntry]:
        for entry in entries:
            validate_entry(entry, self._stream)
            yield entry

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
