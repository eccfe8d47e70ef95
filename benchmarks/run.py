"""Every benchmark in one run, side by side with the baselines: one JSON file plus PNG charts.

    uv run python benchmarks/run.py --out benchmarks/results/latest.json     # full sizes
    uv run python benchmarks/run.py --quick --out /tmp/quick.json            # under 5 minutes
    uv run python benchmarks/run.py --sizes tiny --out /tmp/tiny.json        # the smoke test
    uv run python benchmarks/run.py --aws-limits --only throughput --sizes tiny --out /tmp/aws.json

Jobs (one module each, each run in its own process with its own moto server on a free
loopback port, so no JVM, cache or server state leaks from one job into the next):
``throughput``, ``latency``, ``scale`` (one process per registry size), ``shards`` and
``validation``. The machine is small and shared, so absolute figures are noisy: compare the
ratios, which are measured within one run. ``targets`` says which goals are met.

``--aws-limits`` runs every job's Kinesis traffic through AWS's per-shard limits (an
``AwsKinesisProxy`` with ``AwsSemantics.real()`` in front of moto: 5 GetRecords/s and 2 MB/s
read, 1,000 records/s and 1 MB/s written per shard, empty pages behind the tip), and
``aws_limits`` in the result puts the pipeline's records/s per shard next to the read bound
per shard for the workload's record size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.charts import draw_all  # noqa: E402
from benchmarks.machine import machine, versions  # noqa: E402
from benchmarks.sizes import PROFILES, SIZES, Profile, Sizes  # noqa: E402

JOBS = ("throughput", "latency", "scale", "shards", "validation")
GIB = 1024**3
# Goals from the benchmark issue: (figure, comparison, threshold, what it means).
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("throughput.pipeline_vs_raw", ">=", 0.8, "pipeline at 80% of a plain boto3 copy"),
    ("throughput.pipeline_vs_naive", ">=", 5.0, "5x a first-tutorial consumer"),
    ("throughput.read_amplification", "<=", 1.1, "each record fetched about once"),
    ("latency.p50_ms", "<=", 500.0, "median produce-to-delivered at 1,000 events/s"),
    ("latency.p99_ms", "<=", 1500.0, "p99 produce-to-delivered at 1,000 events/s"),
    ("scale.rps_largest_vs_smallest", ">=", 0.8, "records/s barely drop with registry size"),
    ("scale.largest_driver_peak_gib", "<=", 4.0, "driver peak RSS at the largest registry"),
)


def invocations(sizes: Sizes, jobs: Sequence[str]) -> list[tuple[str, list[str]]]:
    calls: list[tuple[str, list[str]]] = []
    for job in jobs:
        if job == "scale":
            memory = ["--driver-memory", sizes.scale_driver_memory]
            calls.extend(
                ("scale", ["--rows", str(rows), *memory]) for rows in sizes.scale_registry_rows
            )
        else:
            calls.append((job, []))
    return calls


def run_part(
    job: str, extra: list[str], profile: str, folder: Path, aws_limits: bool = False
) -> dict[str, Any]:
    """One job in its own process; its stderr goes to a log that is shown if it fails."""
    label = "-".join([job, *extra[1:2]])
    out, log = folder / f"{label}.json", folder / f"{label}.log"
    command = [sys.executable, "-m", f"benchmarks.{job}", "--sizes", profile, "--out", str(out)]
    if aws_limits:
        command.append("--aws-limits")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    print(f"[{datetime.now(UTC):%H:%M:%S}] {label} ...", file=sys.stderr, flush=True)
    with log.open("wb") as handle:
        done = subprocess.run(
            [*command, *extra],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"benchmark job {label} failed (exit {done.returncode}):\n{tail}")
    print(f"    {label} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    part: dict[str, Any] = json.loads(out.read_text())
    part["job_s"] = round(seconds, 1)
    return part


def combine_scale(parts: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted(parts, key=lambda p: p["registry_rows"])
    smallest, largest = runs[0], runs[-1]
    return {
        "runs": runs,
        "smallest_rows": smallest["registry_rows"],
        "largest_rows": largest["registry_rows"],
        "rps_largest_vs_smallest": round(largest["records_per_s"] / smallest["records_per_s"], 4),
        "largest_driver_peak_gib": largest["driver_peak_rss_gib"],
        "memory_method": (
            "RSS of the driver JVM (pid from the py4j gateway: "
            "ProcessHandle.current().pid()), the larger of /proc/<pid>/status VmRSS sampled "
            "every 100 ms and the kernel's VmHWM high-water mark at the end of the run; one "
            "fresh JVM per registry size. Python workers are separate processes "
            "(process_tree_peak_pss_bytes adds them, as proportional set size)."
        ),
    }


def _lookup(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def evaluate_targets(result: dict[str, Any]) -> dict[str, Any]:
    evaluated: dict[str, Any] = {}
    for figure, comparison, threshold, meaning in TARGETS:
        value = _lookup(result, figure)
        met = None
        if isinstance(value, int | float):
            met = value >= threshold if comparison == ">=" else value <= threshold
        evaluated[figure] = {
            "value": value,
            "target": f"{comparison} {threshold:g}",
            "met": met,
            "meaning": meaning,
        }
    return evaluated


def aws_limits_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's records/s per shard next to AWS's read bound per shard."""
    throughput = result.get("throughput", {})
    figures: dict[str, Any] = {"on": bool(result.get("aws_limits"))}
    for key in (
        "pipeline_rps_per_shard",
        "read_bound_rps_per_shard",
        "pipeline_vs_read_bound",
        "record_bytes_mean",
        "read_bound_basis",
    ):
        figures[key] = throughput.get(key)
    traffic = throughput.get("aws_limits_traffic") or {}
    figures["refused"] = traffic.get("refused")
    figures["empty_pages"] = traffic.get("empty_pages")
    return figures


def run_all(
    sizes: Sizes, jobs: Sequence[str], out: Path, aws_limits: bool = False
) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "streamenrich",
        "command": " ".join(["uv run python", *sys.argv]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "aws_limits": aws_limits,
        "sizes": sizes.profile,
        "machine": machine(),
        "versions": versions(),
        "parameters": sizes.as_dict(),
    }
    scale_parts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamenrich-bench-run-") as folder:
        for job, extra in invocations(sizes, jobs):
            part = run_part(job, extra, sizes.profile, Path(folder), aws_limits)
            if job == "scale":
                scale_parts.append(part)
            else:
                result[job] = part
    if scale_parts:
        result["scale"] = combine_scale(scale_parts)
    result["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = evaluate_targets(result)
    if "throughput" in result:
        result["aws_limits_figures"] = aws_limits_figures(result)
    result["charts"] = draw_all(result, out.parent, out.stem)
    # Keep the file's key order stable: jobs in the order of JOBS, then the summary.
    ordered = {k: v for k, v in result.items() if k not in (*JOBS, "targets", "charts")}
    ordered.update({job: result[job] for job in JOBS if job in result})
    ordered.update({"targets": result["targets"], "charts": result["charts"]})
    return ordered


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file; charts go beside it")
    parser.add_argument("--quick", action="store_true", help="same as --sizes quick")
    parser.add_argument("--sizes", choices=PROFILES, default=None, help="default: full")
    parser.add_argument("--only", nargs="+", choices=JOBS, default=list(JOBS), help="jobs to run")
    parser.add_argument(
        "--aws-limits",
        action="store_true",
        help="run the Kinesis traffic through AWS's per-shard limits (AwsKinesisProxy)",
    )
    args = parser.parse_args(argv)
    if args.quick and args.sizes not in (None, "quick"):
        parser.error("--quick and --sizes disagree")
    profile: Profile = "quick" if args.quick else (args.sizes or "full")
    result = run_all(SIZES[profile], args.only, args.out, args.aws_limits)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    summary = {name: (t["value"], t["met"]) for name, t in result["targets"].items()}
    printed: dict[str, Any] = {
        "out": str(args.out),
        "elapsed_s": result["elapsed_s"],
        "targets": summary,
    }
    if args.aws_limits and "aws_limits_figures" in result:
        printed["aws_limits"] = result["aws_limits_figures"]
    print(json.dumps(printed, indent=2))


if __name__ == "__main__":
    main()
