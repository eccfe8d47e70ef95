"""The registry held once on every executor, instead of a broadcast join in every micro-batch.

A broadcast join ships the whole registry again with every micro-batch (collect, build a hash
table, send it to each task): with 5,000,000 people that is most of a batch's time. Here the
registry is written once per job as an Arrow IPC file sorted by the RUT's body number,
distributed with ``SparkContext.addFile`` (a local copy on every executor, no shared storage
needed), and memory-mapped by each Python worker the first time it needs it. A lookup is a
binary search (``numpy.searchsorted``) of a batch's keys in the sorted key column and a
``take`` of the matching rows: no per-batch shipping, no per-process index to build, and the
workers of one executor share the file's pages.

>>> index = RegistryIndex.build(spark, registry, work_dir)          # doctest: +SKIP
>>> joined = index.join(parsed)                                      # doctest: +SKIP

The key is the canonical RUT's body (``12345678`` for ``12345678-5``): the check digit is a
function of the body, so bodies are unique exactly when RUTs are. A duplicated RUT is refused
when the file is built (:class:`DuplicateRutError`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from streamenrich.enrich.rules import PERSON_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The body number of a canonical RUT (BIGINT), on the events and in the file.
KEY_COLUMN = "_person_key"
# Opened files per Python worker process, by file name (a long-lived worker may serve
# several jobs; the oldest is dropped beyond this many).
_MAX_OPEN = 4
# Rows per record batch of the file (see :func:`_write_sorted`); the Python driver holds
# one such batch at a time (about 200 MB at a million people).
ROWS_PER_BATCH = 1 << 20
_OPEN: dict[str, tuple[pa.Table, np.ndarray]] = {}
# The lookup's struct column, flattened into the person columns right after.
_PERSON = "_person"


class DuplicateRutError(ValueError):
    """The registry holds a RUT twice; its events would be joined twice."""


def rut_key(rut: Column) -> Column:
    """The body number of a canonical RUT column (null stays null)."""
    from pyspark.sql import functions as F

    return F.substring_index(rut, "-", 1).cast("bigint")


@dataclass(frozen=True)
class RegistryIndex:
    """A registry file distributed to the executors; picklable (only names travel)."""

    file_name: str
    rows: int
    person_ddl: str

    @classmethod
    def build(
        cls, spark: SparkSession, registry: DataFrame, work_dir: str | Path | None = None
    ) -> RegistryIndex:
        """Sort ``registry`` (the registry contract, canonical RUTs) into the distributed file.

        Spark sorts on the executors and hands the sorted partitions to the driver one at a
        time, as Arrow IPC chunks; the driver appends them to a local file (under ``work_dir``,
        default a temporary folder, deleted at exit) and gives it to ``addFile``. The driver
        holds one partition at a time, never the whole registry; no shared storage is needed.
        Raises :class:`DuplicateRutError` if a RUT appears twice.
        """
        from pyspark.sql import functions as F

        people = registry.select(
            rut_key(F.col("rut")).alias(KEY_COLUMN),
            *[F.col(name).alias(column) for name, column in PERSON_COLUMNS.items()],
        )
        person_ddl = ", ".join(
            f"{f.name} {f.dataType.simpleString()}" for f in people.schema.fields[1:]
        )
        folder = Path(tempfile.mkdtemp(prefix="registry-", dir=work_dir))
        atexit.register(shutil.rmtree, folder, True)
        target = folder / f"registry-index-{uuid.uuid4().hex[:12]}.arrow"
        chunks = people.orderBy(KEY_COLUMN).mapInArrow(_ipc_chunks, "chunk BINARY")
        rows = _write_sorted(
            (row.chunk for row in chunks.toLocalIterator()), target, _arrow_schema(people)
        )
        spark.sparkContext.addFile(str(target))
        return cls(target.name, rows, person_ddl)

    def join(self, frame: DataFrame, key: Column) -> DataFrame:
        """``frame`` with the person columns of :data:`PERSON_COLUMNS` (null when ``key`` is
        null or not in the registry); one row out per row in, in order.

        The lookup is a scalar Arrow UDF: only the key goes to the Python worker and only the
        person's columns come back, while Spark keeps the rest of each row on its side (a
        ``mapInArrow`` would send every column through Python and back).
        """
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf
        from pyspark.sql.types import StructType

        person = StructType.fromDDL(self.person_ddl)
        assert isinstance(person, StructType)
        # The type is given, since PySpark reads type hints unevaluated (this module's
        # annotations are strings); its advice to prefer hints is silenced for that reason.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "It is preferred to specify type hints")
            lookup = arrow_udf(
                _Lookup(self.file_name, tuple(person.names)), person, ArrowUDFType.SCALAR
            )
        looked_up = frame.select("*", lookup(key).alias(_PERSON))
        return looked_up.select(
            *[F.col(f"`{name}`") for name in frame.columns],
            *[F.col(_PERSON).getField(name).alias(name) for name in person.names],
        )


def _arrow_schema(frame: DataFrame) -> pa.Schema:
    types = {"bigint": pa.int64(), "string": pa.string(), "boolean": pa.bool_()}
    return pa.schema([(f.name, types[f.dataType.simpleString()]) for f in frame.schema.fields])


def _ipc_chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side: a partition's rows as Arrow IPC stream bytes, one chunk per batch."""
    for batch in batches:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        yield pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()])], ["chunk"])


def _write_sorted(chunks: Iterator[bytes], target: Path, schema: pa.Schema) -> int:
    """Append the sorted chunks to ``target``; check that keys strictly increase.

    Spark's chunks (a few thousand rows each) are written as record batches of up to
    :data:`ROWS_PER_BATCH` rows: a lookup gathers from every batch it touches, so fewer and
    larger batches make it cheaper (500 batches at 5,000,000 people cost 10x one batch).
    """
    rows = 0
    previous: int | None = None
    pending: list[pa.RecordBatch] = []
    held = 0
    with ipc.new_file(str(target), schema) as writer:
        for chunk in chunks:
            for batch in ipc.open_stream(chunk):
                keys = batch.column(0).to_numpy(zero_copy_only=False)
                if len(keys):
                    if not (np.diff(keys) > 0).all() or (
                        previous is not None and keys[0] <= previous
                    ):
                        raise DuplicateRutError(
                            "the registry holds the same RUT more than once; validate it "
                            "before the run (reference validation reports the duplicates)"
                        )
                    previous = int(keys[-1])
                pending.append(batch.cast(schema) if batch.schema != schema else batch)
                rows += batch.num_rows
                held += batch.num_rows
                if held >= ROWS_PER_BATCH:
                    writer.write_batch(pa.concat_batches(pending))
                    pending, held = [], 0
        if pending:
            writer.write_batch(pa.concat_batches(pending))
    return rows


def _open(file_name: str) -> tuple[pa.Table, np.ndarray]:
    """The memory-mapped table and its key column, once per worker process."""
    if file_name not in _OPEN:
        from pyspark import SparkFiles

        source = pa.memory_map(SparkFiles.get(file_name), "r")
        table = ipc.open_file(source).read_all()
        keys = table.column(KEY_COLUMN).to_numpy()
        while len(_OPEN) >= _MAX_OPEN:
            _OPEN.pop(next(iter(_OPEN)))
        _OPEN[file_name] = (table.drop_columns([KEY_COLUMN]), keys)
    return _OPEN[file_name]


def lookup_rows(keys: np.ndarray, query: pa.Array) -> pa.Array:
    """Row numbers of ``query``'s keys in the sorted ``keys`` (null where absent or null)."""
    wanted = pc.fill_null(query, -1).to_numpy(zero_copy_only=False)
    # Searched in key order: neighbouring searches then walk the same cache lines of
    # ``keys`` (3x faster than in arrival order at 5,000,000 keys).
    order = np.argsort(wanted, kind="stable")
    positions = np.empty(len(wanted), np.int64)
    positions[order] = np.searchsorted(keys, wanted[order])
    clipped = np.minimum(positions, max(len(keys) - 1, 0))
    found = (positions < len(keys)) & (keys[clipped] == wanted) if len(keys) else wanted < -1
    found &= query.is_valid().to_numpy(zero_copy_only=False)
    return pa.array(clipped, pa.int64(), mask=~found)


def gather(table: pa.Table, rows: pa.Array) -> pa.Table:
    """``table.take(rows)`` (a null row number gives a null row), chunk by chunk.

    The file holds one record batch per million people (:data:`ROWS_PER_BATCH`), and
    ``Table.take`` over several chunks costs time in the number of chunks for every call
    (10x slower at 100 chunks than at one). Here each chunk is asked only for its own rows,
    in row order, and the pieces are put back in the order asked.
    """
    batches = table.to_batches()
    if len(batches) <= 1:
        return table.take(rows)
    sizes = np.fromiter((b.num_rows for b in batches), np.int64, len(batches))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    valid = rows.is_valid().to_numpy(zero_copy_only=False)
    wanted = pc.fill_null(rows, 0).to_numpy(zero_copy_only=False)[valid]
    # In row order (so in chunk order), each chunk read front to back.
    order = np.argsort(wanted, kind="stable")
    chunk = np.searchsorted(starts, wanted, side="right") - 1
    by_chunk, local = chunk[order], wanted[order] - starts[chunk[order]]
    bounds = np.flatnonzero(np.diff(by_chunk)) + 1
    pieces = [
        batches[int(part[0])].take(pa.array(positions))
        for part, positions in zip(np.split(by_chunk, bounds), np.split(local, bounds), strict=True)
        if len(part)
    ]
    gathered = pa.Table.from_batches(pieces, table.schema).combine_chunks()
    # Row k of the request is gathered[inverse[k]] when valid, null otherwise.
    inverse = np.empty(len(order), np.int64)
    inverse[order] = np.arange(len(order))
    full = np.zeros(len(valid), np.int64)
    full[valid] = inverse
    return gathered.take(pa.array(full, pa.int64(), mask=~valid))


@dataclass(frozen=True)
class _Lookup:
    """The Arrow UDF: the keys of a batch in, the person of each (a struct) out."""

    file_name: str
    names: tuple[str, ...]

    def __call__(self, query: pa.Array) -> pa.Array:
        people, keys = _open(self.file_name)
        matched = gather(people, lookup_rows(keys, query))
        columns = [matched.column(name).combine_chunks() for name in self.names]
        return pa.StructArray.from_arrays(columns, names=list(self.names))
