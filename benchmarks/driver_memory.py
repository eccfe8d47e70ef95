"""Peak memory of the Spark driver: the RSS of its JVM, sampled, and the kernel's high-water mark.

The JVM's pid comes from the JVM itself over the py4j gateway
(``ProcessHandle.current().pid()``); if that fails, the one ``java`` child of this process
is used. Two figures: the largest ``VmRSS`` seen by a sampler thread (every 100 ms) and
``VmHWM``, the peak RSS the kernel recorded for the process since it started, which no
sampling interval can miss. The Python workers are other processes (children of the JVM);
the proportional set size (PSS) of the JVM and all of them is sampled too, as
``process_tree_peak_pss_bytes``: PSS, not RSS, because forked workers share pages and their
RSS would count those pages once per worker.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_INTERVAL_S = 0.1
PROC = Path("/proc")


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _pss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    seen: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        for child in _children(current):
            if child not in seen:
                seen.append(child)
                pending.append(child)
    return seen


def jvm_pid(spark: Any) -> tuple[int, str]:
    """The driver JVM's pid, and how it was found."""
    try:
        return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()), "py4j"
    except Exception:
        for child in _children(os.getpid()):
            try:
                if (PROC / str(child) / "exe").resolve().name == "java":
                    return child, "proc-children"
            except OSError:
                continue
    raise RuntimeError("cannot find the driver JVM's pid")


@dataclass(frozen=True)
class MemoryPeak:
    pid: int
    found_by: str
    sampled_peak_bytes: int
    kernel_peak_bytes: int
    process_tree_peak_bytes: int
    samples: int

    def as_dict(self) -> dict[str, Any]:
        gib = 1024**3
        return {
            "driver_pid_found_by": self.found_by,
            "driver_peak_rss_bytes": max(self.sampled_peak_bytes, self.kernel_peak_bytes),
            "driver_peak_rss_gib": round(
                max(self.sampled_peak_bytes, self.kernel_peak_bytes) / gib, 3
            ),
            "driver_sampled_peak_rss_bytes": self.sampled_peak_bytes,
            "driver_vmhwm_bytes": self.kernel_peak_bytes,
            "process_tree_peak_pss_bytes": self.process_tree_peak_bytes,
            "samples": self.samples,
            "sample_interval_s": SAMPLE_INTERVAL_S,
        }


class DriverMemorySampler:
    """Samples the JVM's RSS on a daemon thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, spark: Any) -> None:
        self.pid, self.found_by = jvm_pid(spark)
        self._stop = threading.Event()
        self._peak_kib = 0
        self._tree_peak_kib = 0
        self._samples = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> DriverMemorySampler:
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _status_kib(self.pid, "VmRSS") or 0
            tree = sum(_pss_kib(p) for p in [self.pid, *_descendants(self.pid)])
            self._peak_kib = max(self._peak_kib, rss)
            self._tree_peak_kib = max(self._tree_peak_kib, tree)
            self._samples += 1
            self._stop.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> MemoryPeak:
        hwm = _status_kib(self.pid, "VmHWM") or 0
        self._stop.set()
        self._thread.join(5)
        return MemoryPeak(
            pid=self.pid,
            found_by=self.found_by,
            sampled_peak_bytes=self._peak_kib * 1024,
            kernel_peak_bytes=hwm * 1024,
            process_tree_peak_bytes=self._tree_peak_kib * 1024,
            samples=self._samples,
        )
