"""The boto3 side: a configured Kinesis client, shard listing, and transient-error backoff.

Plain boto3, no Spark: the Spark source and sink, the producer and the subscriber all use it.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp

from streamenrich.kinesis.errors import KinesisCallError, OptionError

# Error codes that mean "slow down and try again". Anything else fails loudly.
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
    }
)
EXPIRED_ITERATOR_CODE = "ExpiredIteratorException"


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``, else ``None``."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def is_future_timestamp(exc: BaseException, position_kind: str) -> bool:
    """Whether ``GetShardIterator`` refused an ``AT_TIMESTAMP`` start as later than its clock.

    The start is pinned on the client (a ``LATEST`` start becomes the query's start time),
    and the server's clock may run a little behind it. The refusal means the shard holds no
    record at or after that time yet: the read is empty, and the position stays.
    """
    if position_kind != "AT_TIMESTAMP" or error_code(exc) != "InvalidArgumentException":
        return False
    assert isinstance(exc, ClientError)  # error_code found a code
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return "future" in message.lower()


def describe_failure(
    operation: str, stream_name: str, exc: ClientError, shard_id: str | None = None
) -> str:
    """``GetRecords on stream 's' shard x failed: Code: message``: what a failed batch says."""
    error = exc.response.get("Error", {})
    where = f"stream {stream_name!r}" + (f" shard {shard_id}" if shard_id else "")
    return (
        f"{operation} on {where} failed: "
        f"{error.get('Code', 'Unknown')}: {error.get('Message', str(exc))}"
    )


# Server-side codes that mean "try again later" (beyond throttling).
SERVER_BUSY_CODES = frozenset(
    {"InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"}
)


def is_transient(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) is worth a retry: throttling, a busy
    service, or the network. Everything else (denied, not found, bad input) is final.
    """
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    network = (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        ConnectionError,
        TimeoutError,
    )
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = error_code(exc)
        if code in THROTTLING_CODES or code in SERVER_BUSY_CODES or isinstance(exc, network):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def resolve_region(region: str | None) -> str:
    """The region to use: the option, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

    Read at call time (never at import) so a Spark driver can pass what it resolved to the
    executors explicitly.
    """
    resolved = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not resolved:
        session_region = boto3.session.Session().region_name
        resolved = session_region
    if not resolved:
        raise OptionError(
            "option 'region' is not set and no AWS_REGION / AWS_DEFAULT_REGION / profile "
            "region is configured"
        )
    return resolved


def resolve_endpoint(endpoint_url: str | None) -> str | None:
    """The endpoint override: the option, else ``AWS_ENDPOINT_URL_KINESIS``, else AWS's own."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KINESIS") or None


def epoch_to_utc(value: Any) -> datetime:
    """A response timestamp as an aware UTC ``datetime``.

    Kinesis sends ``ApproximateArrivalTimestamp`` as epoch seconds. botocore's default parser
    attaches dateutil's local time zone to each one, and that is about half of the CPU a
    client spends parsing a GetRecords response. The instant is the same either way; only
    the ``tzinfo`` differs (UTC here). Text, and epochs the platform cannot convert, go to
    botocore's own parser.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    parsed: datetime = parse_timestamp(value)
    return parsed


_SESSIONS: dict[tuple[str | None, ...], boto3.session.Session] = {}
# botocore sessions are not safe to create clients from in several threads at once.
_SESSION_LOCK = threading.Lock()


def _environment_key() -> tuple[str | None, ...]:
    """The variables a session resolves credentials, profile, region and endpoint from."""
    return tuple(
        os.environ.get(name)
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_KINESIS",
        )
    )


def _utc_session() -> boto3.session.Session:
    """A boto3 session (one per process and environment) whose clients parse epochs to UTC."""
    key = _environment_key()
    session = _SESSIONS.get(key)
    if session is None:
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=epoch_to_utc
        )
        session = _SESSIONS[key] = boto3.session.Session(botocore_session=core)
    return session


def client_config(*, retries: int = 4, read_timeout_s: float = 30.0) -> Config:
    """The botocore settings of every client here: standard retries, timeouts, pool size."""
    return Config(
        retries={"mode": "standard", "max_attempts": retries},
        connect_timeout=10,
        read_timeout=read_timeout_s,
        max_pool_connections=32,
    )


def kinesis_client(
    region: str | None = None,
    endpoint_url: str | None = None,
    *,
    retries: int = 4,
    read_timeout_s: float = 30.0,
) -> Any:
    """A boto3 Kinesis client.

    Credentials come from the standard chain (environment, profile, instance or task role);
    they are never passed through Spark options. botocore's ``standard`` retry mode retries
    throttling and network errors ``retries`` times (5 attempts in all by default) before the
    caller's own backoff takes over. Response timestamps are aware UTC datetimes
    (:func:`epoch_to_utc`); boto3's default gives the same instants in the local zone.
    """
    config = client_config(retries=retries, read_timeout_s=read_timeout_s)
    with _SESSION_LOCK:
        return _utc_session().client(
            "kinesis",
            region_name=resolve_region(region),
            endpoint_url=resolve_endpoint(endpoint_url),
            config=config,
        )


_SHARED: dict[tuple[str | None, ...], Any] = {}


def shared_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """One :func:`kinesis_client` per process and configuration, for executor tasks.

    A new client costs tens of milliseconds (botocore loads its service model); a Python
    worker runs many tasks, one at a time, so its tasks share one. The key includes the
    credential and endpoint variables, so a changed environment gets a new client.
    """
    key = (region, endpoint_url, *_environment_key())
    if key not in _SHARED:
        _SHARED[key] = kinesis_client(region, endpoint_url)
    return _SHARED[key]


@dataclass(frozen=True)
class Shard:
    """One shard of a stream, with its lineage (parents are drained before children start)."""

    shard_id: str
    parent_shard_id: str | None
    adjacent_parent_shard_id: str | None
    starting_sequence_number: str
    ending_sequence_number: str | None

    @property
    def is_closed(self) -> bool:
        return self.ending_sequence_number is not None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Shard:
        seq_range = item.get("SequenceNumberRange", {})
        return cls(
            shard_id=item["ShardId"],
            parent_shard_id=item.get("ParentShardId"),
            adjacent_parent_shard_id=item.get("AdjacentParentShardId"),
            starting_sequence_number=seq_range.get("StartingSequenceNumber", "0"),
            ending_sequence_number=seq_range.get("EndingSequenceNumber"),
        )


def list_shards(client: Any, stream_name: str, *, page_size: int | None = None) -> list[Shard]:
    """Every shard of the stream (open and closed within retention), sorted by shard id.

    ``ListShards`` pages with ``NextToken``; a call that carries ``NextToken`` must not carry
    ``StreamName`` (the API rejects both together). ``page_size`` sets ``MaxResults``
    (AWS's default page is up to 1,000 shards).
    """
    shards: list[Shard] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    if page_size is not None:
        kwargs["MaxResults"] = page_size
    while True:
        try:
            page = call_with_backoff(functools.partial(client.list_shards, **kwargs))
        except ClientError as exc:
            raise KinesisCallError(describe_failure("ListShards", stream_name, exc)) from exc
        shards.extend(Shard.from_api(item) for item in page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
        if page_size is not None:
            kwargs["MaxResults"] = page_size
    return sorted(shards, key=lambda s: s.shard_id)


def backoff_delay(attempt: int, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap_s, base_s * (2**attempt)))


def call_with_backoff(
    call: Callable[[], Any],
    *,
    max_attempts: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``call``; on a throttling error code wait with jitter and try again.

    Any other error, or throttling past ``max_attempts``, propagates unchanged.
    """
    for attempt in range(max_attempts):
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) not in THROTTLING_CODES or attempt == max_attempts - 1:
                raise
            sleep(backoff_delay(attempt))
    raise AssertionError("unreachable")
