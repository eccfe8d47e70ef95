"""Throughput of the enrichment transform alone, on a static DataFrame.

    uv run python benchmarks/enrich_transform.py          # 1,000,000 events, 1,000,000 people
    uv run python benchmarks/enrich_transform.py --events 100000 --people 100000

The events come from ``streamenrich.producer`` (every RUT spelling, 10% unknown RUTs, 10%
malformed records) and the registry is synthetic; both are written to Parquet and cached in
memory before any timing, so only the transform is measured. Every output is written to the
``noop`` sink, which evaluates every column of every row. Two ways are timed:

- ``separate``: ``enrich(...)`` and the four outputs written one after another (each output
  is its own plan: the input is parsed four times, the registry broadcast three times);
- ``persisted``: ``enrich(..., persist=True)``, as a ``foreachBatch`` would use it (one parse,
  one join and one rule evaluation shared by the four outputs).

A short warm-up run first compiles the generated code. Prints one JSON document; with
``--output`` also writes it to that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamenrich.enrich import BUCKETS, RuleSet, enrich  # noqa: E402
from streamenrich.producer import generate_events  # noqa: E402
from streamenrich.reference.contract import REGIONS, RISK_LEVELS, SEGMENTS  # noqa: E402
from streamenrich.reference.rut import format_rut  # noqa: E402


def write_registry(path: Path, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ruts = [format_rut(body) for body in rng.sample(range(1_000_000, 99_999_999), count)]
    table = pa.table(
        {
            "rut": ruts,
            "full_name": [f"Persona {i}" for i in range(count)],
            "segment": [rng.choice(SEGMENTS) for _ in range(count)],
            "region": [rng.choice(REGIONS) for _ in range(count)],
            "risk_level": [rng.choice(RISK_LEVELS) for _ in range(count)],
            "watchlist": [rng.random() < 0.02 for _ in range(count)],
            "credit_limit": pa.array(
                [rng.randrange(0, 50_000_000, 1000) for _ in range(count)], pa.int64()
            ),
        }
    )
    pq.write_table(table, path)
    return ruts


def write_events(path: Path, count: int, ruts: list[str], seed: int) -> None:
    records = generate_events(count, ruts, seed=seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    table = pa.table(
        {
            "data": pa.array([data for _, data in records], pa.binary()),
            "streamName": ["events"] * count,
            "shardId": [f"shardId-{i % 4:012d}" for i in range(count)],
            "partitionKey": [key for key, _ in records],
            "sequenceNumber": [str(49_600_000_000_000_000_000 + i) for i in range(count)],
            "approximateArrivalTimestamp": pa.array(
                [start + timedelta(milliseconds=i) for i in range(count)], pa.timestamp("us", "UTC")
            ),
        }
    )
    pq.write_table(table, path)


def write_all(frames: dict[str, Any]) -> dict[str, float]:
    seconds = {}
    for name, frame in frames.items():
        started = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        seconds[name] = round(time.perf_counter() - started, 2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--partitions", type=int, default=8, help="input partitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="enrich-bench-"))
    started = time.perf_counter()
    ruts = write_registry(work / "registry.parquet", args.people, args.seed)
    write_events(work / "events.parquet", args.events, ruts, args.seed)
    prepare_s = time.perf_counter() - started

    spark = (
        SparkSession.builder.master(args.master)
        .appName("enrich-transform-benchmark")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(args.partitions))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    rules = RuleSet.from_file(ROOT / "reference_data" / "rules.yaml")
    events = spark.read.parquet(str(work / "events.parquet")).repartition(args.partitions)
    events = events.cache()
    registry = spark.read.parquet(str(work / "registry.parquet")).cache()
    assert events.count() == args.events and registry.count() == args.people

    write_all(enrich(events.limit(20_000), registry, rules).frames())  # warm-up: codegen

    separate = write_all(enrich(events, registry, rules).frames())
    shared = enrich(events, registry, rules, persist=True)
    persisted = write_all(shared.frames())
    counts = {name: frame.count() for name, frame in shared.frames().items()}
    shared.unpersist()
    assert sum(counts.values()) == args.events, counts

    result = {
        "benchmark": "enrich_transform",
        "command": " ".join(["uv run python", *sys.argv]),
        "events": args.events,
        "people": args.people,
        "master": args.master,
        "input_partitions": args.partitions,
        "separate_seconds": separate,
        "separate_records_per_s": round(args.events / sum(separate.values())),
        "persisted_seconds": persisted,
        "persisted_records_per_s": round(args.events / sum(persisted.values())),
        "bucket_counts": {name: counts[name] for name in BUCKETS},
        "data_preparation_s": round(prepare_s, 1),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "spark": spark.version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
