"""How big each benchmark runs: the three profiles ``full``, ``quick`` and ``tiny``.

``full`` is the issue's figures, ``quick`` runs in a few minutes with the same JSON shape, and
``tiny`` is for the smoke test (every job runs, each as small as still means something).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Profile = Literal["full", "quick", "tiny"]
PROFILES: tuple[Profile, ...] = ("full", "quick", "tiny")


@dataclass(frozen=True)
class Sizes:
    profile: Profile
    throughput_events: int
    throughput_shards: int
    throughput_registry_rows: int
    latency_rate_per_s: int
    latency_duration_s: int
    scale_registry_rows: tuple[int, ...]
    scale_events: int
    shard_counts: tuple[int, ...]
    shards_events: int
    validation_rows: int
    # Events put before each measured run and processed once, so codegen and the registry
    # cache are warm (the throughput job's cold pipeline run does not use it); 0: no warm-up.
    warmup_events: int
    # spark.driver.memory of every scale run (one setting for all sizes, so peaks compare):
    # Spark's default 1g heap runs out of memory broadcasting a 5,000,000-row registry.
    scale_driver_memory: str = "3g"
    # Share of the input that the shipped rules match (about; the actual share is reported).
    target_matched_share: float = 0.2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SIZES: dict[Profile, Sizes] = {
    "full": Sizes(
        profile="full",
        throughput_events=200_000,
        throughput_shards=4,
        throughput_registry_rows=10_000,
        latency_rate_per_s=1_000,
        latency_duration_s=60,
        scale_registry_rows=(10_000, 1_000_000, 5_000_000),
        scale_events=100_000,
        shard_counts=(1, 2, 4, 8),
        shards_events=100_000,
        validation_rows=1_000_000,
        warmup_events=30_000,
    ),
    "quick": Sizes(
        profile="quick",
        throughput_events=10_000,
        throughput_shards=4,
        throughput_registry_rows=10_000,
        latency_rate_per_s=1_000,
        latency_duration_s=10,
        scale_registry_rows=(10_000, 100_000),
        scale_events=10_000,
        shard_counts=(1, 2),
        shards_events=10_000,
        validation_rows=100_000,
        warmup_events=2_000,
    ),
    "tiny": Sizes(
        profile="tiny",
        throughput_events=2_000,
        throughput_shards=4,
        throughput_registry_rows=2_000,
        latency_rate_per_s=200,
        latency_duration_s=4,
        scale_registry_rows=(2_000, 10_000),
        scale_events=2_000,
        shard_counts=(1, 2),
        shards_events=2_000,
        validation_rows=5_000,
        warmup_events=0,
    ),
}
