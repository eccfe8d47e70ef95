"""Per-batch, per-shard end positions, written by the executors and read by the driver.

Layout: ``<metadataPath>/<runId>/<batch>/<shardId>.json``, plus ``_planned.json`` in a
batch's folder, written by the driver when it plans the batch. The run id is made when a
query starts without a checkpoint, so two queries sharing a ``metadataPath`` never collide.

A shard's record is created once and never replaced: the first attempt of a task to finish
its read wins, and a later attempt that read something else fails instead of overwriting it
(:meth:`BatchMetadataStore.write_once`). A file is written under a temporary name and then
hard-linked to its final name, which fails if the name exists: a reader sees the whole
record or none, and two writers cannot both win. Where hard links are not supported (some
FUSE mounts), an exclusive create (``O_EXCL``) takes the link's place.

The path must be visible to the driver and every executor: a local folder for ``local[*]``
or a single-machine cluster, a shared mount past one machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any

from streamenrich.kinesis.errors import MetadataError

PLANNED = "_planned.json"


@dataclass(frozen=True)
class ShardGap:
    """Records that were trimmed (retention) before the source read them.

    ``after`` is the last position the source had (a sequence number, or ``None`` for a
    start that was not a sequence number); ``resumed_at`` the first record still there
    (``None`` when nothing was left). ``records`` counts the lost records when known (a
    replay knows how many it recorded), else ``None``: Kinesis does not say how many records
    a trimmed stretch held.
    """

    after: str | None
    resumed_at: str | None
    records: int | None = None


@dataclass(frozen=True)
class ShardBatchRecord:
    """What one shard's read in one batch covered.

    ``first``/``last`` are the sequence numbers of the first and last records delivered (both
    ``None`` when none were). ``caught_up`` says the read reached the tip of the shard (or the
    availableNow cut-off); ``closed`` says the shard's iterator ended (the shard is drained).
    ``iterator`` is where the read stopped as a Kinesis shard iterator, with the time it was
    issued (``iterator_ms``, epoch milliseconds) and a sequence number it may return first that
    was delivered already (``iterator_skip``): the next batch continues from it while it is
    valid, so a walk through empty pages is never lost. ``gap`` reports records trimmed
    before they were read (only with ``failOnDataLoss=false``; otherwise the read fails).
    """

    shard_id: str
    first: str | None
    last: str | None
    count: int
    caught_up: bool
    closed: bool
    fetched: int
    iterator: str | None = None
    iterator_ms: int | None = None
    iterator_skip: str | None = None
    gap: ShardGap | None = None

    def same_range(self, other: ShardBatchRecord) -> bool:
        """Whether two reads of one shard delivered the same records."""
        return (self.first, self.last, self.count, self.closed) == (
            other.first,
            other.last,
            other.count,
            other.closed,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardBatchRecord:
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        gap = raw.pop("gap", None)
        return cls(**raw, gap=ShardGap(**gap) if gap is not None else None)


class BatchMetadataStore:
    """A folder of :class:`ShardBatchRecord` files."""

    def __init__(self, root: str, run_id: str) -> None:
        if root.startswith(("s3://", "s3a://")):
            raise MetadataError(
                f"metadataPath {root!r}: object stores are not supported yet; use a shared "
                "filesystem path mounted on the driver and every executor"
            )
        self.root = root
        self.run_id = run_id

    @staticmethod
    def new_run_id() -> str:
        return uuid.uuid4().hex

    def _batch_dir(self, batch: int) -> str:
        return os.path.join(self.root, self.run_id, str(batch))

    def _path(self, batch: int, shard_id: str) -> str:
        return os.path.join(self._batch_dir(batch), f"{shard_id}.json")

    def _create(self, final: str, text: str) -> bool:
        """Create ``final`` with ``text`` unless it exists; whether this call created it."""
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temp = f"{final}.{uuid.uuid4().hex}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, final)  # atomic, and refuses an existing name
            return True
        except FileExistsError:
            return False
        except OSError:
            # No hard links here (some FUSE mounts): an exclusive create refuses an existing
            # name too; a reader could see a partly written file, which then fails loudly.
            return self._create_exclusive(final, text)
        finally:
            os.unlink(temp)

    @staticmethod
    def _create_exclusive(final: str, text: str) -> bool:
        try:
            descriptor = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def write_once(self, batch: int, record: ShardBatchRecord) -> ShardBatchRecord:
        """Store ``record`` unless an earlier attempt stored one; returns the stored record."""
        if self._create(self._path(batch, record.shard_id), record.to_json()):
            return record
        stored = self.read(batch, record.shard_id)
        if stored is None:
            raise MetadataError(
                f"shard record {self._path(batch, record.shard_id)} vanished while written"
            )
        return stored

    def read(self, batch: int, shard_id: str) -> ShardBatchRecord | None:
        path = self._path(batch, shard_id)
        try:
            with open(path, encoding="utf-8") as handle:
                return ShardBatchRecord.from_json(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise MetadataError(f"unreadable shard record {path}: {exc}") from exc

    def read_batch(self, batch: int, shard_ids: list[str]) -> dict[str, ShardBatchRecord]:
        """The records of every given shard for ``batch``; a missing one is an error.

        Spark plans batch k+1 only after batch k finished, and every task of batch k writes
        its record before it ends, so a missing record means the folder is not shared with
        the executors or was deleted.
        """
        records: dict[str, ShardBatchRecord] = {}
        for shard_id in shard_ids:
            record = self.read(batch, shard_id)
            if record is None:
                raise MetadataError(
                    f"no end position for shard {shard_id} in batch {batch} under "
                    f"{self._batch_dir(batch)}: metadataPath must be shared by the driver and "
                    "all executors, and must not be cleaned while the query runs"
                )
            records[shard_id] = record
        return records

    def mark_planned(self, batch: int) -> None:
        """Note that ``batch`` was planned: a later replay of it must find its records."""
        self._create(os.path.join(self._batch_dir(batch), PLANNED), "{}")

    def is_planned(self, batch: int) -> bool:
        """Whether this store holds ``batch``'s state: its mark, or (a batch planned before
        marks existed) its folder or the previous batch's, which commits keep."""
        return any(
            os.path.exists(path)
            for path in (
                os.path.join(self._batch_dir(batch), PLANNED),
                self._batch_dir(batch),
                self._batch_dir(batch - 1),
            )
        )

    def purge_before(self, batch: int) -> None:
        """Delete the records of batches before ``batch`` (they can never be replayed)."""
        run_dir = os.path.join(self.root, self.run_id)
        try:
            names = os.listdir(run_dir)
        except FileNotFoundError:
            return
        for name in names:
            with contextlib.suppress(ValueError):
                if int(name) < batch:
                    shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
