"""Provision and check streams: create if missing, wait for ACTIVE, verify the configuration.

Idempotent: calling :func:`ensure_stream` twice with the same arguments changes nothing the
second time. A stream in a state it cannot be used in fails with a message that says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from streamenrich.kinesis.client import error_code
from streamenrich.kinesis.errors import KinesisError

# Kinesis keeps records 24 hours unless told otherwise; 8,760 hours is the maximum.
DEFAULT_RETENTION_HOURS = 24
MAX_RETENTION_HOURS = 8_760


class StreamStateError(KinesisError):
    """The stream exists but is in a wrong state or configuration."""


@dataclass(frozen=True)
class StreamStatus:
    name: str
    arn: str
    status: str
    open_shards: int
    retention_hours: int
    encryption: str
    key_id: str | None
    created: bool
    changes: tuple[str, ...]


def _summary(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def wait_for_active(
    client: Any,
    name: str,
    timeout_s: float = 120.0,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the stream is ACTIVE; raise :class:`StreamStateError` past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = _summary(client, name)
        if summary is None:
            raise StreamStateError(f"stream {name!r} does not exist")
        status = summary["StreamStatus"]
        if status == "ACTIVE":
            return summary
        if status == "DELETING":
            raise StreamStateError(f"stream {name!r} is being deleted")
        if time.monotonic() >= deadline:
            raise StreamStateError(f"stream {name!r} still {status} after {timeout_s:.0f}s")
        sleep(0.5)


def ensure_stream(
    client: Any,
    name: str,
    shards: int,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    kms_key_id: str | None = None,
    timeout_s: float = 120.0,
) -> StreamStatus:
    """Create ``name`` with ``shards`` shards if missing, else check it; return what is there.

    Retention below ``retention_hours`` is raised to it, and server-side encryption with
    ``kms_key_id`` is switched on when asked for. A different open-shard count is an error
    (resharding is a decision for an operator, not a side effect of a run).
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if not DEFAULT_RETENTION_HOURS <= retention_hours <= MAX_RETENTION_HOURS:
        raise ValueError(f"retention_hours must be within 24..{MAX_RETENTION_HOURS}")
    changes: list[str] = []
    created = False
    if _summary(client, name) is None:
        try:
            client.create_stream(StreamName=name, ShardCount=shards)
            created = True
            changes.append(f"created with {shards} shards")
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # created meanwhile: fine
                raise
    summary = wait_for_active(client, name, timeout_s)
    open_shards = int(summary.get("OpenShardCount", shards))
    if open_shards != shards:
        raise StreamStateError(
            f"stream {name!r} has {open_shards} open shards, configured {shards}: reshard it "
            "(UpdateShardCount) or change the configuration"
        )
    retention = int(summary.get("RetentionPeriodHours", DEFAULT_RETENTION_HOURS))
    if retention < retention_hours:
        client.increase_stream_retention_period(
            StreamName=name, RetentionPeriodHours=retention_hours
        )
        changes.append(f"retention {retention}h -> {retention_hours}h")
        summary = wait_for_active(client, name, timeout_s)
        retention = retention_hours
    encryption = str(summary.get("EncryptionType", "NONE"))
    key_id = summary.get("KeyId")
    if kms_key_id and (encryption != "KMS" or key_id != kms_key_id):
        client.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=kms_key_id)
        changes.append("server-side encryption on")
        summary = wait_for_active(client, name, timeout_s)
        encryption, key_id = "KMS", kms_key_id
    return StreamStatus(
        name=name,
        arn=str(summary["StreamARN"]),
        status=str(summary["StreamStatus"]),
        open_shards=open_shards,
        retention_hours=retention,
        encryption=encryption,
        key_id=key_id,
        created=created,
        changes=tuple(changes),
    )
