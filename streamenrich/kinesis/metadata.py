"""Per-batch, per-shard end positions, written by the executors and read by the driver.

Layout: ``<metadataPath>/<runId>/<batch>/<shardId>.json``. The run id is made when a query
starts without a checkpoint, so two queries sharing a ``metadataPath`` never collide. A file
is written to a temporary name and renamed, so a reader sees either the whole record or none.

The path must be visible to the driver and every executor: a local folder for ``local[*]``
or a single-machine cluster, a shared mount (or object store) past one machine.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass

from streamenrich.kinesis.errors import MetadataError


@dataclass(frozen=True)
class ShardBatchRecord:
    """What one shard's read in one batch covered.

    ``first``/``last`` are the sequence numbers of the first and last records delivered (both
    ``None`` when none were). ``caught_up`` says the read reached the tip of the shard (or the
    availableNow cut-off); ``closed`` says the shard's iterator ended (the shard is drained).
    """

    shard_id: str
    first: str | None
    last: str | None
    count: int
    caught_up: bool
    closed: bool
    fetched: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardBatchRecord:
        return cls(**json.loads(text))


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

    def write(self, batch: int, record: ShardBatchRecord) -> None:
        directory = self._batch_dir(batch)
        os.makedirs(directory, exist_ok=True)
        final = self._path(batch, record.shard_id)
        temp = f"{final}.{uuid.uuid4().hex}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(record.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)

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

    def purge_before(self, batch: int) -> None:
        """Delete the records of batches before ``batch`` (they can never be replayed)."""
        run_dir = os.path.join(self.root, self.run_id)
        try:
            names = os.listdir(run_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.isdigit() and int(name) < batch:
                shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
