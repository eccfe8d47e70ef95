"""CPU seconds used by process trees, from ``/proc`` (Linux), to tell whose cores a run used.

On a 2-core machine the local endpoint (moto, a Python server) and the consumer share the
cores, so a consumer's records/s is bounded by the CPU both spend per record:
``records/s <= cores / (endpoint_cpu_per_record + consumer_cpu_per_record)``. The throughput
job records both for each contender, which says how far the endpoint itself lets any
consumer go (see :func:`cpu_bound_rps`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks.driver_memory import _descendants

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of one live process (0 if it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_s(root: int, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of ``root`` and its live descendants, minus the trees rooted in ``exclude``."""
    excluded: set[int] = set()
    for pid in exclude:
        excluded.add(pid)
        excluded.update(_descendants(pid))
    pids = [root, *_descendants(root)]
    return sum(process_cpu_s(pid) for pid in pids if pid not in excluded)


@dataclass
class CpuMeter:
    """Splits CPU time into the endpoint's tree and the rest of this process's tree."""

    endpoint_pid: int

    def sample(self) -> tuple[float, float]:
        endpoint = tree_cpu_s(self.endpoint_pid)
        consumer = tree_cpu_s(os.getpid(), exclude=frozenset({self.endpoint_pid}))
        return endpoint, consumer

    def since(self, start: tuple[float, float], records: int) -> dict[str, float]:
        endpoint, consumer = self.sample()
        per_1000 = 1000.0 / records if records else 0.0
        return {
            "endpoint_cpu_s": round(endpoint - start[0], 2),
            "consumer_cpu_s": round(consumer - start[1], 2),
            "endpoint_cpu_ms_per_1000_records": round((endpoint - start[0]) * per_1000 * 1000, 1),
            "consumer_cpu_ms_per_1000_records": round((consumer - start[1]) * per_1000 * 1000, 1),
        }


def cpu_bound_rps(cores: int, cpu: dict[str, float]) -> float | None:
    """The records/s that ``cores`` fully busy would allow at a run's CPU per record."""
    per_record_s = (
        cpu["endpoint_cpu_ms_per_1000_records"] + cpu["consumer_cpu_ms_per_1000_records"]
    ) / 1_000_000
    return round(cores / per_record_s, 1) if per_record_s > 0 else None
