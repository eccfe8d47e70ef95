"""The benchmark suite runs end to end (tiny sizes) and its JSON has every figure, as a number.

No thresholds: the figures depend on the machine. The targets are evaluated in the JSON
itself (``targets``) and reported, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

FIGURES: dict[str, tuple[str, ...]] = {
    "machine": ("cores", "memory_bytes", "load_average_1m_at_start", "load_average_1m_at_end"),
    "throughput": (
        "events",
        "matched",
        "matched_share",
        "raw_copy_rps",
        "raw_copy_utc_rps",
        "raw_copy_with_dead_letters_rps",
        "naive_rps",
        "pipeline_rps",
        "pipeline_cold_rps",
        "pipeline_total_s",
        "pipeline_vs_raw",
        "pipeline_vs_raw_utc",
        "pipeline_vs_naive",
        "read_amplification",
    ),
    "latency": (
        "rate_per_s",
        "duration_s",
        "produced",
        "measured_records",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
    ),
    "scale": ("rps_largest_vs_smallest", "largest_driver_peak_gib"),
    "validation": ("rows", "validation_s", "csv_s", "parquet_s"),
}
SCALE_RUN = ("registry_rows", "records_per_s", "driver_peak_rss_bytes", "driver_peak_rss_gib")
SHARDS_RUN = ("shards", "records_per_s")
VERSIONS = ("python", "pyspark", "boto3", "moto")
CHARTS = ("throughput", "latency", "scale", "shards")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
def test_tiny_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results" / "tiny.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--sizes", "tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())

    missing = [
        f"{section}.{key}"
        for section, keys in FIGURES.items()
        for key in keys
        if not _is_number(result.get(section, {}).get(key))
    ]
    assert missing == []
    assert result["sizes"] == "tiny"
    assert all(isinstance(result["versions"][name], str) for name in VERSIONS)
    assert result["parameters"]["throughput_events"] == result["throughput"]["events"]

    scale_runs = result["scale"]["runs"]
    assert [r["registry_rows"] for r in scale_runs] == result["parameters"]["scale_registry_rows"]
    assert all(_is_number(r[key]) for r in scale_runs for key in SCALE_RUN)
    shard_runs = result["shards"]["runs"]
    assert [r["shards"] for r in shard_runs] == result["parameters"]["shard_counts"]
    assert all(_is_number(r[key]) for r in shard_runs for key in SHARDS_RUN)

    # Every record was read by every contender, and the pipeline agreed with the oracle.
    throughput = result["throughput"]
    assert throughput["raw_copy"]["records_read"] == throughput["events"]
    assert throughput["raw_copy_utc"]["records_read"] == throughput["events"]
    assert (
        throughput["raw_copy_utc"]["records_written"] == throughput["raw_copy"]["records_written"]
    )
    assert throughput["naive"]["records_read"] == throughput["events"]
    assert throughput["pipeline"]["records_read"] == throughput["events"]
    assert throughput["pipeline_cold"]["records_read"] == throughput["events"]
    assert throughput["pipeline_matches_oracle"] is True
    assert result["latency"]["records_read"] == result["latency"]["produced"]

    assert set(result["targets"]) and all("met" in t for t in result["targets"].values())
    for name in CHARTS:
        chart = Path(result["charts"][name])
        assert chart.parent == out.parent
        assert chart.read_bytes().startswith(b"\x89PNG")
