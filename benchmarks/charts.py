"""The PNG charts of a result (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 120


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _label_bars(axis: Any, bars: Any, values: list[float], fmt: str = "{:,.0f}") -> None:
    for bar, value in zip(bars, values, strict=True):
        axis.annotate(
            fmt.format(value),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )


def throughput_chart(result: dict[str, Any], path: Path) -> Path:
    names = [
        "raw copy\n(boto3)",
        "raw copy\n(UTC client)",
        "raw copy\n+ dead letters",
        "naive\nconsumer",
        "pipeline\n(first run)",
        "pipeline\n(steady)",
    ]
    keys = (
        "raw_copy_rps",
        "raw_copy_utc_rps",
        "raw_copy_with_dead_letters_rps",
        "naive_rps",
        "pipeline_cold_rps",
        "pipeline_rps",
    )
    # Results written before the UTC client was measured have no such figure.
    pairs = [(n, k) for n, k in zip(names, keys, strict=True) if k in result]
    names = [n for n, _ in pairs]
    values = [float(result[k]) for _, k in pairs]
    colors = {
        "raw_copy_rps": "#9e9e9e",
        "raw_copy_utc_rps": "#c7c7c7",
        "raw_copy_with_dead_letters_rps": "#b5b5b5",
        "naive_rps": "#f4a259",
        "pipeline_cold_rps": "#9cc3dc",
        "pipeline_rps": "#3d7ea6",
    }
    figure, axis = plt.subplots(figsize=(9, 4))
    bars = axis.bar(names, values, color=[colors[k] for _, k in pairs])
    _label_bars(axis, bars, values)
    axis.set_ylabel("records/s")
    axis.set_title(
        f"Throughput, {result['events']:,} events, {result['shards']} shards "
        f"({result['matched_share']:.0%} matched)"
    )
    return _save(figure, path)


def latency_chart(result: dict[str, Any], path: Path) -> Path:
    histogram = result["histogram_ms"]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    if histogram["edges_ms"]:
        width = (
            histogram["edges_ms"][1] - histogram["edges_ms"][0]
            if len(histogram["edges_ms"]) > 1
            else 50.0
        )
        axis.bar(
            histogram["edges_ms"], histogram["counts"], width=width, align="edge", color="#3d7ea6"
        )
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
        if result.get(key) is not None:
            axis.axvline(
                result[key],
                color="black",
                linestyle=style,
                label=f"{key[:3]} {result[key]:,.0f} ms",
            )
    axis.set_xlabel("produce to delivered (ms)")
    axis.set_ylabel("matched records")
    axis.set_title(
        f"Latency at {result['rate_per_s']:,} events/s for {result['duration_s']} s "
        f"({result['measured_records']:,} records)"
    )
    axis.legend()
    return _save(figure, path)


def scale_chart(result: dict[str, Any], path: Path) -> Path:
    runs = result["runs"]
    labels = [f"{r['registry_rows']:,}" for r in runs]
    rps = [float(r["records_per_s"]) for r in runs]
    memory = [float(r["driver_peak_rss_gib"]) for r in runs]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    bars = axis.bar(labels, rps, color="#3d7ea6", label="records/s")
    _label_bars(axis, bars, rps)
    axis.set_xlabel("registry rows")
    axis.set_ylabel("records/s")
    twin = axis.twinx()
    twin.plot(labels, memory, color="#c0392b", marker="o", label="driver peak RSS")
    twin.set_ylabel("driver peak RSS (GiB)")
    twin.set_ylim(0, max(memory) * 1.3 if memory else 1)
    axis.set_title("Records/s and driver memory by registry size")
    figure.legend(loc="upper right", bbox_to_anchor=(0.88, 0.88))
    return _save(figure, path)


def shards_chart(result: dict[str, Any], path: Path) -> Path:
    runs = result["runs"]
    labels = [str(r["shards"]) for r in runs]
    rps = [float(r["records_per_s"]) for r in runs]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    bars = axis.bar(labels, rps, color="#3d7ea6")
    _label_bars(axis, bars, rps)
    axis.set_xlabel("input shards")
    axis.set_ylabel("records/s")
    axis.set_title(f"Records/s by shard count ({runs[0]['events']:,} events)" if runs else "")
    return _save(figure, path)


def draw_all(result: dict[str, Any], folder: Path, stem: str) -> dict[str, str]:
    """Every chart whose job is in ``result``; returns chart name -> path."""
    drawers = {
        "throughput": throughput_chart,
        "latency": latency_chart,
        "scale": scale_chart,
        "shards": shards_chart,
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name, draw in drawers.items():
        if name in result:
            paths[name] = str(draw(result[name], folder / f"{stem}-{name}.png"))
    return paths
