"""Times generating, validating and loading a registry of N rows (default 1,000,000).

    uv run python benchmarks/reference_registry.py --rows 1000000 [--spark] [--json OUT]

Prints one line per step with wall-clock seconds; ``--spark`` also times ``load_registry``
(session start excluded). Files go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spark", action="store_true", help="also time load_registry")
    parser.add_argument("--json", type=Path, default=None, help="write the timings here")
    args = parser.parse_args()

    timings: dict[str, float] = {}

    def timed(name: str, step: Any) -> Any:
        started = time.perf_counter()
        value = step()
        timings[name] = round(time.perf_counter() - started, 2)
        print(f"{name:<34} {timings[name]:>7.2f} s", flush=True)
        return value

    from streamenrich.reference.generate import generate_registry_file

    with tempfile.TemporaryDirectory(prefix="registry-bench-") as folder:
        root = Path(folder)
        for suffix in ("csv", "parquet"):
            out = root / f"registry.{suffix}"
            timed(
                f"generate {suffix}",
                lambda out=out: generate_registry_file(args.rows, args.seed, out),
            )
        timed("import validation (GX)", lambda: __import__("streamenrich.reference.validation"))
        from streamenrich.reference.validation import read_registry_frame, validate_registry

        for suffix in ("csv", "parquet"):
            path = root / f"registry.{suffix}"
            timed(f"read {suffix} into pandas", lambda path=path: read_registry_frame(path))
            report = timed(
                f"validate_registry {suffix}",
                lambda path=path: validate_registry(path, root / "docs"),
            )
            assert report.success and report.row_count == args.rows, report.to_markdown()
        if args.spark:
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            from pyspark.sql import SparkSession

            from streamenrich.reference.registry import load_registry

            spark = timed(
                "spark session",
                lambda: (
                    SparkSession.builder.master("local[2]")
                    .config("spark.ui.enabled", "false")
                    .config("spark.ui.showConsoleProgress", "false")
                    .getOrCreate()
                ),
            )
            for suffix in ("csv", "parquet"):
                path = root / f"registry.{suffix}"
                timed(f"load_registry {suffix}", lambda path=path: load_registry(spark, str(path)))
            spark.stop()
    if args.json:
        machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        record = {"rows": args.rows, "machine": machine, "seconds": timings}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
