"""The command line every job module shares: ``python -m benchmarks.<job> --sizes P --out F``.

``run.py`` starts each job in its own process (a fresh JVM, so memory and warm-up do not leak
from one job into the next); a job can also be run alone the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.endpoint import AWS_LIMITS_VARIABLE
from benchmarks.sizes import PROFILES, SIZES, Sizes


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", choices=PROFILES, default="full")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument(
        "--aws-limits",
        action="store_true",
        help="Kinesis traffic through AWS's per-shard limits (AwsKinesisProxy in front of moto)",
    )
    return parser


def run_job(
    description: str,
    measure: Callable[[Sizes, Path, argparse.Namespace], dict[str, Any]],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse the shared options, run ``measure`` in a scratch folder, write its JSON."""
    parser = job_parser(description)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.aws_limits:
        # Read by LocalEndpoint.start(), in this process (the job's endpoints).
        os.environ[AWS_LIMITS_VARIABLE] = "1"
    work = args.work or Path(tempfile.mkdtemp(prefix="streamenrich-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(SIZES[args.sizes], work, args)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result.setdefault("aws_limits", bool(args.aws_limits))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None
