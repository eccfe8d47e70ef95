"""What a result was measured on: the machine, the load on it, and the library versions."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("pyspark", "boto3", "botocore", "moto", "pyarrow", "pandas", "great-expectations")


def _meminfo_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def java_version() -> str | None:
    try:
        done = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', done.stderr)
    return match.group(1) if match else None


def machine() -> dict[str, Any]:
    total = _meminfo_bytes("MemTotal")
    return {
        "cores": os.cpu_count(),
        "memory_bytes": total,
        "memory_gib": round(total / 1024**3, 1) if total else None,
        "memory_available_gib_at_start": round((_meminfo_bytes("MemAvailable") or 0) / 1024**3, 1),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "java": java_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
