"""Source and sink options: every key a constant with its default, parsed once into a typed object.

Spark hands options over as a case-insensitive map of strings (``dict(options)`` lower-cases
the keys), so keys are matched without regard to case. Every error names the option.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from streamenrich.kinesis.client import resolve_endpoint, resolve_region
from streamenrich.kinesis.errors import OptionError
from streamenrich.kinesis.positions import ShardPosition

STREAM_NAME = "streamName"
REGION = "region"
ENDPOINT_URL = "endpointUrl"
STARTING_POSITION = "startingPosition"
MAX_RECORDS_PER_SHARD = "maxRecordsPerShard"
MAX_FETCH_TIME_MS = "maxFetchTimeMs"
METADATA_PATH = "metadataPath"
MAX_PARTITIONS = "maxPartitions"
FAIL_ON_DATA_LOSS = "failOnDataLoss"

DEFAULT_STARTING_POSITION = "TRIM_HORIZON"
# One GetRecords call returns at most 10,000 records: a batch of one call per shard.
DEFAULT_MAX_RECORDS_PER_SHARD = 10_000
DEFAULT_MAX_FETCH_TIME_MS = 1_000
DEFAULT_METADATA_DIR = os.path.join(".streamenrich", "kinesis-metadata")
# As Spark's Kafka source: records gone before they were read fail the query by default.
DEFAULT_FAIL_ON_DATA_LOSS = True

SOURCE_OPTIONS = (
    STREAM_NAME,
    REGION,
    ENDPOINT_URL,
    STARTING_POSITION,
    MAX_RECORDS_PER_SHARD,
    MAX_FETCH_TIME_MS,
    METADATA_PATH,
    MAX_PARTITIONS,
    FAIL_ON_DATA_LOSS,
)
SINK_OPTIONS = (STREAM_NAME, REGION, ENDPOINT_URL)
# Keys Spark itself puts in a source's or sink's options (``.load(path)``, ``.start(path)``,
# ``option("checkpointLocation", ...)`` on a writer): not ours to reject.
SPARK_OWN_OPTIONS = frozenset({"path", "checkpointlocation"})


def _lookup(options: Mapping[str, str], key: str) -> str | None:
    wanted = key.lower()
    for name, value in options.items():
        if name.lower() == wanted:
            return value
    return None


def _required(options: Mapping[str, str], key: str) -> str:
    value = _lookup(options, key)
    if value is None or not value.strip():
        raise OptionError(f"option '{key}' is required")
    return value.strip()


def _positive_int(options: Mapping[str, str], key: str, default: int) -> int:
    raw = _lookup(options, key)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise OptionError(f"option '{key}' must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise OptionError(f"option '{key}' must be a positive integer, got {raw!r}")
    return value


def _boolean(options: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _lookup(options, key)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text not in ("true", "false"):
        raise OptionError(f"option '{key}' must be true or false, got {raw!r}")
    return text == "true"


def parse_starting_position(raw: str) -> ShardPosition:
    """``TRIM_HORIZON``, ``LATEST`` or ``AT_TIMESTAMP:<ISO-8601>`` (naive times are UTC)."""
    text = raw.strip()
    upper = text.upper()
    if upper == "TRIM_HORIZON":
        return ShardPosition.trim_horizon()
    if upper == "LATEST":
        return ShardPosition.latest()
    if upper.startswith("AT_TIMESTAMP:"):
        stamp = text.split(":", 1)[1].strip()
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(
                f"option '{STARTING_POSITION}': {stamp!r} is not an ISO-8601 timestamp"
            ) from None
        return ShardPosition.at_timestamp(when)
    raise OptionError(
        f"option '{STARTING_POSITION}' must be TRIM_HORIZON, LATEST or "
        f"AT_TIMESTAMP:<ISO-8601>, got {raw!r}"
    )


def _reject_unknown(options: Mapping[str, str], known: tuple[str, ...]) -> None:
    lowered = {k.lower() for k in known} | SPARK_OWN_OPTIONS
    unknown = sorted(k for k in options if k.lower() not in lowered)
    if unknown:
        raise OptionError(f"unknown option '{unknown[0]}'; known options: {', '.join(known)}")


@dataclass(frozen=True)
class SourceOptions:
    """The Kinesis source's options, resolved on the driver and shipped to executors as is."""

    stream_name: str
    region: str
    endpoint_url: str | None
    starting_position: ShardPosition
    max_records_per_shard: int
    max_fetch_time_ms: int
    metadata_path: str
    # At most this many partitions (read tasks) per micro-batch; None: one per shard.
    max_partitions: int | None = None
    # Fail when records were trimmed before they were read; false: skip them, report a gap.
    fail_on_data_loss: bool = DEFAULT_FAIL_ON_DATA_LOSS

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SourceOptions:
        _reject_unknown(options, SOURCE_OPTIONS)
        raw_position = _lookup(options, STARTING_POSITION) or DEFAULT_STARTING_POSITION
        metadata = _lookup(options, METADATA_PATH) or DEFAULT_METADATA_DIR
        if not metadata.startswith(("s3://", "s3a://")):
            # Resolved once on the driver: executors may run with another working directory.
            metadata = os.path.abspath(metadata)
        return cls(
            stream_name=_required(options, STREAM_NAME),
            region=resolve_region(_lookup(options, REGION)),
            endpoint_url=resolve_endpoint(_lookup(options, ENDPOINT_URL)),
            starting_position=parse_starting_position(raw_position),
            max_records_per_shard=_positive_int(
                options, MAX_RECORDS_PER_SHARD, DEFAULT_MAX_RECORDS_PER_SHARD
            ),
            max_fetch_time_ms=_positive_int(options, MAX_FETCH_TIME_MS, DEFAULT_MAX_FETCH_TIME_MS),
            metadata_path=metadata,
            max_partitions=(
                _positive_int(options, MAX_PARTITIONS, 1)
                if _lookup(options, MAX_PARTITIONS) is not None
                else None
            ),
            fail_on_data_loss=_boolean(options, FAIL_ON_DATA_LOSS, DEFAULT_FAIL_ON_DATA_LOSS),
        )


@dataclass(frozen=True)
class SinkOptions:
    """The Kinesis sink's options."""

    stream_name: str
    region: str
    endpoint_url: str | None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SinkOptions:
        _reject_unknown(options, SINK_OPTIONS)
        return cls(
            stream_name=_required(options, STREAM_NAME),
            region=resolve_region(_lookup(options, REGION)),
            endpoint_url=resolve_endpoint(_lookup(options, ENDPOINT_URL)),
        )
