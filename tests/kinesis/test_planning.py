"""Driver-side planning without Spark: shard admission by lineage, the metadata store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamenrich.kinesis.client import Shard
from streamenrich.kinesis.errors import MetadataError
from streamenrich.kinesis.metadata import BatchMetadataStore, ShardBatchRecord
from streamenrich.kinesis.positions import ShardPosition
from streamenrich.kinesis.source import admit_new_shards, group_shards, merged

TH = str(ShardPosition.trim_horizon())
END = str(ShardPosition.shard_end())


def _shard(shard_id: str, *parents: str, closed: bool = False) -> Shard:
    return Shard(
        shard_id=shard_id,
        parent_shard_id=parents[0] if parents else None,
        adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
        starting_sequence_number="0",
        ending_sequence_number="99" if closed else None,
    )


# shard 0 split into 2 and 3; shards 3 and 1 merged into 4.
LINEAGE = [
    _shard("s0", closed=True),
    _shard("s1", closed=True),
    _shard("s2", "s0"),
    _shard("s3", "s0", closed=True),
    _shard("s4", "s3", "s1"),
]


def test_a_new_query_starts_at_the_roots_only() -> None:
    assert admit_new_shards(LINEAGE, {}, ShardPosition.trim_horizon()) == {"s0": TH, "s1": TH}


def test_children_wait_until_every_parent_is_drained() -> None:
    reading = {"s0": "AFTER_SEQUENCE_NUMBER:5", "s1": TH}
    assert admit_new_shards(LINEAGE, reading, ShardPosition.trim_horizon()) == reading

    s0_done = {"s0": END, "s1": TH}
    assert admit_new_shards(LINEAGE, s0_done, ShardPosition.trim_horizon()) == {
        "s0": END,
        "s1": TH,
        "s2": TH,
        "s3": TH,
    }
    # s4 needs both s3 and s1 drained.
    s3_done = {"s0": END, "s1": TH, "s2": TH, "s3": END}
    assert "s4" not in admit_new_shards(LINEAGE, s3_done, ShardPosition.trim_horizon())
    both = {"s0": END, "s1": END, "s2": TH, "s3": END}
    assert admit_new_shards(LINEAGE, both, ShardPosition.trim_horizon())["s4"] == TH


def test_drained_shards_past_retention_are_forgotten() -> None:
    listed = [s for s in LINEAGE if s.shard_id not in ("s0", "s1", "s3")]
    positions = {"s0": END, "s1": END, "s2": "AFTER_SEQUENCE_NUMBER:9", "s3": END, "s4": TH}
    assert admit_new_shards(listed, positions, ShardPosition.trim_horizon()) == {
        "s2": "AFTER_SEQUENCE_NUMBER:9",
        "s4": TH,
    }


def test_metadata_round_trip_and_purge(tmp_path: Path) -> None:
    store = BatchMetadataStore(str(tmp_path), "run-1")
    record = ShardBatchRecord("s0", "10", "19", 10, True, False, 11)
    for batch in range(4):
        store.write_once(batch, record)
    assert store.read(2, "s0") == record
    assert store.read(2, "s9") is None
    store.purge_before(2)
    assert store.read(1, "s0") is None
    assert store.read_batch(3, ["s0"]) == {"s0": record}
    other_run = BatchMetadataStore(str(tmp_path), "run-2")
    assert other_run.read(3, "s0") is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_purge_removes_every_earlier_batch_including_the_initial_one(tmp_path: Path) -> None:
    store = BatchMetadataStore(str(tmp_path), "run")
    record = ShardBatchRecord("s0", None, None, 0, True, False, 0)
    for batch in (-1, 0, 1, 2):
        store.write_once(batch, record)
    store.mark_planned(2)
    store.purge_before(2)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["2"]
    assert store.is_planned(2) and store.is_planned(3) and not store.is_planned(1)
    assert not BatchMetadataStore(str(tmp_path), "other-run").is_planned(2)


def test_a_record_is_written_once_and_the_first_writer_wins(tmp_path: Path) -> None:
    store = BatchMetadataStore(str(tmp_path), "run")
    first = ShardBatchRecord("s0", "1", "5", 5, True, False, 5)
    later = ShardBatchRecord("s0", "1", "9", 9, True, False, 9)
    assert store.write_once(0, first) == first
    assert store.write_once(0, later) == first
    assert store.read(0, "s0") == first
    assert not list(tmp_path.rglob("*.tmp"))


def test_without_hard_links_an_exclusive_create_keeps_the_first_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: str, target: str) -> None:
        raise PermissionError(1, "Operation not permitted")  # as a FUSE mount without links

    monkeypatch.setattr("streamenrich.kinesis.metadata.os.link", no_links)
    store = BatchMetadataStore(str(tmp_path), "run")
    first = ShardBatchRecord("s0", "1", "5", 5, True, False, 5)
    later = ShardBatchRecord("s0", "1", "9", 9, True, False, 9)
    assert store.write_once(0, first) == first
    assert store.write_once(0, later) == first
    assert store.read(0, "s0") == first
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_or_corrupt_metadata_fails_loudly(tmp_path: Path) -> None:
    store = BatchMetadataStore(str(tmp_path), "run")
    with pytest.raises(MetadataError, match="no end position for shard s0 in batch 0"):
        store.read_batch(0, ["s0"])
    (tmp_path / "run" / "0").mkdir(parents=True)
    (tmp_path / "run" / "0" / "s0.json").write_text("{not json")
    with pytest.raises(MetadataError, match="unreadable shard record"):
        store.read(0, "s0")


@pytest.mark.parametrize(
    ("shards", "most", "groups"),
    [
        (["a", "b", "c", "d", "e"], 2, [["a", "c", "e"], ["b", "d"]]),
        (["a", "b", "c"], 3, [["a"], ["b"], ["c"]]),
        (["a", "b"], 8, [["a"], ["b"]]),
        (["a", "b", "c"], None, [["a"], ["b"], ["c"]]),
        (["a", "b", "c", "d"], 1, [["a", "b", "c", "d"]]),
        ([], 2, []),
    ],
)
def test_group_shards_round_robin(
    shards: list[str], most: int | None, groups: list[list[str]]
) -> None:
    assert group_shards(shards, most) == groups


def test_merged_keeps_every_item_and_each_source_in_order() -> None:
    import time

    def source(name: str, n: int, pause: float) -> Any:
        def run() -> Any:
            for i in range(n):
                time.sleep(pause)
                yield (name, i)

        return run

    got = list(merged([source("a", 30, 0.001), source("b", 5, 0.01), source("c", 0, 0)]))

    assert sorted(got) == sorted([("a", i) for i in range(30)] + [("b", i) for i in range(5)])
    for name in ("a", "b"):
        assert [i for n, i in got if n == name] == sorted(i for n, i in got if n == name)


def test_merged_raises_the_first_error_and_stops_the_others() -> None:
    import threading

    produced = []

    def endless() -> Any:
        while True:
            produced.append(1)
            yield 1

    def failing() -> Any:
        yield 2
        raise ShardReadFailure("GetRecords failed on shard-1")

    with pytest.raises(ShardReadFailure, match="shard-1"):
        list(merged([endless, failing]))
    count = len(produced)
    assert not [t for t in threading.enumerate() if t.name.startswith("kinesis-read-")]
    assert len(produced) == count  # the endless source stopped


def test_merged_closed_early_stops_its_threads() -> None:
    import threading

    def endless() -> Any:
        while True:
            yield 1

    stream = merged([endless, endless])
    assert [next(stream) for _ in range(10)] == [1] * 10
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("kinesis-read-")]


class ShardReadFailure(RuntimeError):
    pass
