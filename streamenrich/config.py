"""Settings in one place: ``STREAMENRICH_*`` variables (and the standard AWS ones).

Read at call time with :func:`load_settings`, never at import time. AWS endpoint, region
and credentials are not settings here: boto3 reads ``AWS_ENDPOINT_URL_KINESIS``,
``AWS_REGION`` and the credential chain itself, so the same code runs locally and on AWS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["available_now", "continuous"]


class Settings(BaseSettings):
    """Defaults for the flows and the CLI; every field can be set as ``STREAMENRICH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="STREAMENRICH_", extra="ignore")

    input_stream: str = Field("events", min_length=1, max_length=128, description="Input stream")
    output_stream: str = Field("enriched", min_length=1, max_length=128, description="Matches")
    dead_letter_stream: str = Field(
        "dead-letter", min_length=1, max_length=128, description="Rejected records"
    )
    shards: int = Field(4, ge=1, le=500, description="Open shards of each stream")
    retention_hours: int = Field(24, ge=24, le=8_760, description="Stream retention")
    kms_key_id: str | None = Field(None, description="KMS key for server-side encryption")
    reference_path: Path = Field(
        Path("reference_data/persons.csv"), description="Registry, CSV or Parquet"
    )
    rules_path: Path = Field(Path("reference_data/rules.yaml"), description="Rules file")
    home: Path = Field(Path(".streamenrich"), description="Local state: logs, checkpoints")
    checkpoint_dir: Path = Field(
        Path(".streamenrich/checkpoints/enrichment"), description="Spark checkpoint location"
    )
    metadata_path: Path | None = Field(
        None, description="Kinesis source metadataPath (default: under the checkpoint)"
    )
    spark_master: str = Field("local[*]", description="Spark master URL")
    max_records_per_shard: int = Field(10_000, ge=1, le=1_000_000)
    max_fetch_time_ms: int = Field(1_000, ge=1, le=600_000)
    trigger_interval_ms: int = Field(500, ge=0, le=3_600_000, description="continuous mode")
    kinesis_port: int = Field(4566, ge=1, le=65_535, description="local Kinesis endpoint")
    prefect_port: int = Field(4200, ge=1, le=65_535, description="local Prefect server")

    def source_metadata_path(self) -> Path:
        return self.metadata_path or self.checkpoint_dir / "kinesis-metadata"


def load_settings(**overrides: object) -> Settings:
    """The environment's settings with ``overrides`` (``None`` values are ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
