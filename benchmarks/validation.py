"""Job ``validation``: how long ``validate_registry`` takes on a registry of N rows.

The registry is generated as CSV and as Parquet; Great Expectations is imported first (its
import time is reported apart), then each file is validated once and must pass.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

from benchmarks.job_cli import run_job
from benchmarks.sizes import Sizes
from benchmarks.workload import REGISTRY_SEED
from streamenrich.reference.generate import generate_registry, write_registry


def measure(sizes: Sizes, work: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    rows = sizes.validation_rows
    table = generate_registry(rows, REGISTRY_SEED)
    paths = {
        suffix: write_registry(table, work / f"registry.{suffix}") for suffix in ("csv", "parquet")
    }
    started = time.perf_counter()
    validation = importlib.import_module("streamenrich.reference.validation")
    import_s = time.perf_counter() - started
    result: dict[str, Any] = {"rows": rows, "import_s": round(import_s, 3)}
    for suffix, path in paths.items():
        started = time.perf_counter()
        report = validation.validate_registry(path, work / "docs")
        seconds = time.perf_counter() - started
        if not report.success or report.row_count != rows:
            raise RuntimeError(f"validation of {path} failed:\n{report.to_markdown()}")
        result[f"{suffix}_s"] = round(seconds, 3)
        result[f"{suffix}_rows_per_s"] = round(rows / seconds, 1)
    result["validation_s"] = result["csv_s"]
    return result


def main() -> None:
    run_job(__doc__.split("\n\n")[0], measure)


if __name__ == "__main__":
    main()
