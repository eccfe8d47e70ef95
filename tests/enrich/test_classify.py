"""``classify`` (one frame, one pass) agrees with ``enrich`` (four frames) record by record,
with the registry held on the executors (``RegistryIndex``) or broadcast (a DataFrame)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from streamenrich.enrich import BUCKETS, enrich, lookup
from streamenrich.enrich.lookup import DuplicateRutError, RegistryIndex, gather, lookup_rows
from streamenrich.enrich.transform import CLASSIFIED_COLUMNS, classify
from streamenrich.producer import generate_events
from streamenrich.reference.contract import REGISTRY_SCHEMA
from tests.enrich.conftest import source_rows

PROCESSED_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _expected(out: Any) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    """record_id -> (bucket, reason, partitionKey, data) from enrich's four frames."""
    expected: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    for row in out.matched.select("record_id", "partitionKey", "data").collect():
        expected[row.record_id] = ("matched", None, row.partitionKey, row.data)
    for row in out.dead_letter.select("record_id", "reason", "partitionKey", "data").collect():
        expected[row.record_id] = ("dead_letter", row.reason, row.partitionKey, row.data)
    for name in ("unmatched", "unknown"):
        for row in getattr(out, name).select("record_id").collect():
            expected[row.record_id] = (name, None, None, None)
    return expected


@pytest.mark.parametrize("held", ["executors", "executors-batched", "broadcast"])
def test_classify_agrees_with_enrich(
    spark: Any,
    people: list[Any],
    registry: Any,
    shipped_rules: Any,
    source_frame: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    held: str,
) -> None:
    """``executors-batched``: the index file in many record batches (as a registry of
    millions of people is), so each lookup gathers from several."""
    if held == "executors-batched":
        monkeypatch.setattr(lookup, "ROWS_PER_BATCH", 37)
    known = [person[0] for person in people]
    records = generate_events(4_000, known, seed=77, unknown_share=0.2, malformed_share=0.15)
    frame = source_frame(source_rows(records))
    from pyspark.sql import functions as F

    now = F.lit(PROCESSED_AT).cast("timestamp")
    expected = _expected(enrich(frame, registry, shipped_rules, processed_at=now))
    people_source: Any = registry
    if held != "broadcast":
        # Spark hands the sorted rows over in Arrow batches of this many rows.
        arrow_batch = "spark.sql.execution.arrow.maxRecordsPerBatch"
        before = spark.conf.get(arrow_batch)
        spark.conf.set(arrow_batch, "10" if held == "executors-batched" else before)
        try:
            people_source = RegistryIndex.build(spark, registry, tmp_path)
        finally:
            spark.conf.set(arrow_batch, before)
    if held == "executors-batched":
        (path,) = tmp_path.glob("registry-*/*.arrow")
        sizes = [b.num_rows for b in ipc.open_file(str(path)).read_all().to_batches()]
        assert sum(sizes) == len(people) and len(sizes) > 3
        assert all(size >= 37 for size in sizes[:-1]), sizes
    classified = classify(frame, people_source, shipped_rules, processed_at=now)

    assert tuple(classified.columns) == CLASSIFIED_COLUMNS
    rows = classified.collect()
    got = {r.record_id: (r.bucket, r.reason, r.partitionKey, r.data) for r in rows}
    assert len(rows) == len(records) == len(got)
    assert got == expected
    counts = {b: sum(1 for v in got.values() if v[0] == b) for b in BUCKETS}
    assert all(counts[b] > 0 for b in BUCKETS), counts


def test_index_refuses_a_duplicated_rut(spark: Any, people: list[Any], tmp_path: Any) -> None:
    doubled = spark.createDataFrame([*people, people[3]], REGISTRY_SCHEMA)
    with pytest.raises(DuplicateRutError, match="more than once"):
        RegistryIndex.build(spark, doubled, tmp_path)


def test_index_counts_every_row(
    spark: Any, registry: Any, people: list[Any], tmp_path: Any
) -> None:
    assert RegistryIndex.build(spark, registry, tmp_path).rows == len(people)


def test_index_join_sends_only_the_key_through_python(
    spark: Any, registry: Any, people: list[Any], tmp_path: Any
) -> None:
    """Each row keeps its own columns and gets the person of its key, or nulls; the Python
    worker sees the key alone (a scalar Arrow UDF), never the whole row."""
    from pyspark.sql import functions as F

    from streamenrich.enrich.lookup import rut_key
    from streamenrich.enrich.rules import PERSON_COLUMNS

    index = RegistryIndex.build(spark, registry, tmp_path)
    wide = "x" * 5_000
    rows = [
        (people[5][0], "a", wide),
        ("1-9", "b", wide),
        (None, "c", wide),
        (people[0][0], "d", ""),
    ]
    frame = spark.createDataFrame(rows, "rut STRING, tag STRING, payload STRING")
    joined = index.join(frame, rut_key(F.col("rut")))

    person_columns = list(PERSON_COLUMNS.values())
    assert joined.columns == ["rut", "tag", "payload", *person_columns]
    got = [tuple(row) for row in joined.orderBy("tag").collect()]
    assert got == [
        (people[5][0], "a", wide, *people[5]),
        ("1-9", "b", wide, *[None] * len(person_columns)),
        (None, "c", wide, *[None] * len(person_columns)),
        (people[0][0], "d", "", *people[0]),
    ]
    plan = joined._jdf.queryExecution().executedPlan().toString()
    assert plan.count("ArrowEvalPython") == 1 and "MapInArrow" not in plan, plan


def test_lookup_rows_finds_present_keys_only() -> None:
    keys = np.array([3, 8, 15, 40], dtype=np.int64)
    query = pa.array([8, 2, 40, 41, None, 3, 15, 9], pa.int64())
    assert lookup_rows(keys, query).to_pylist() == [1, None, 3, None, None, 0, 2, None]


def test_lookup_rows_on_an_empty_registry() -> None:
    keys = np.array([], dtype=np.int64)
    assert lookup_rows(keys, pa.array([1, None], pa.int64())).to_pylist() == [None, None]


@pytest.mark.parametrize("sizes", [[7], [3, 0, 5, 1, 4], [1] * 9])
def test_gather_over_chunks_equals_take(sizes: list[int]) -> None:
    """Chunk by chunk, in the order asked, nulls where the row number is null."""
    total = sum(sizes)
    names = [f"p{i}" for i in range(total)]
    flags = [i % 3 == 0 for i in range(total)]
    batches, start = [], 0
    for size in sizes:
        batches.append(
            pa.RecordBatch.from_arrays(
                [
                    pa.array(names[start : start + size], pa.string()),
                    pa.array(flags[start : start + size], pa.bool_()),
                ],
                ["name", "flag"],
            )
        )
        start += size
    table = pa.Table.from_batches(batches)
    rng = np.random.default_rng(7)
    picks = [int(i) for i in rng.integers(0, total, 40)]
    rows = pa.array([None if k % 5 == 0 else p for k, p in enumerate(picks)], pa.int64())

    got = gather(table, rows)

    expected = [
        None if k % 5 == 0 else {"name": names[p], "flag": flags[p]} for k, p in enumerate(picks)
    ]
    assert [None if row["name"] is None else row for row in got.to_pylist()] == expected
    assert gather(table, pa.array([None, None], pa.int64())).num_rows == 2
    assert gather(table, pa.array([], pa.int64())).num_rows == 0
