"""A local Kinesis endpoint for one benchmark job: moto on a free loopback port, fresh streams.

>>> with LocalEndpoint.start() as endpoint:          # doctest: +SKIP
...     stream = endpoint.new_stream("input", shards=4)

With AWS's per-shard limits (``--aws-limits`` on any job, which sets
``STREAMENRICH_BENCH_AWS_LIMITS=1``), an :class:`AwsKinesisProxy` with
``AwsSemantics.real()`` sits in front of moto: :attr:`LocalEndpoint.url`, which every
contender reads and writes through, is the proxy's, so they all meet 5 GetRecords/s and
2 MB/s read, 1,000 records/s and 1 MB/s written per shard, and the empty pages behind the
tip. Stream admin and preloading (:attr:`LocalEndpoint.client`) go straight to moto: they
are not measured.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from streamenrich.kinesis.client import client_config, kinesis_client
from streamenrich.kinesis.local import LocalKinesis, free_port, start_local_kinesis
from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics

REGION = "us-east-1"
# Set (to "1") by a job's ``--aws-limits``: its endpoints put AWS's limits in front of moto.
AWS_LIMITS_VARIABLE = "STREAMENRICH_BENCH_AWS_LIMITS"
# Dummy credentials and loopback only: a benchmark never reaches AWS.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "SPARK_LOCAL_IP": "127.0.0.1",
}


def aws_limits_requested() -> bool:
    """Whether this job runs under AWS's per-shard limits (read at call time)."""
    return os.environ.get(AWS_LIMITS_VARIABLE, "") == "1"


def use_local_environment() -> None:
    """Set before Spark starts: the JVM and its Python workers inherit this environment."""
    for key, value in LOCAL_ENVIRONMENT.items():
        os.environ[key] = value
    os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


class LocalEndpoint:
    """A moto server started by this process; every stream made here is deleted on exit.

    ``proxy`` is the AWS-limits proxy in front of it when there is one.
    """

    def __init__(self, server: LocalKinesis, proxy: AwsKinesisProxy | None = None) -> None:
        self.server = server
        self.proxy = proxy
        # Admin and preloading: straight to moto, also under AWS limits (not measured).
        self.client = kinesis_client(REGION, server.endpoint_url)
        self._streams: list[str] = []

    @classmethod
    def start(cls, log_path: Path | None = None, aws_limits: bool | None = None) -> LocalEndpoint:
        """``aws_limits``: put AWS's per-shard limits in front of moto (default: as the job's
        ``--aws-limits`` says, see :func:`aws_limits_requested`)."""
        use_local_environment()
        server = start_local_kinesis("moto", free_port(), log_path=log_path)
        limited = aws_limits_requested() if aws_limits is None else aws_limits
        if not limited:
            return cls(server)
        proxy = AwsKinesisProxy(server.endpoint_url, AwsSemantics.real())
        proxy.start()
        return cls(server, proxy)

    @property
    def url(self) -> str:
        """Where the contenders read and write: the AWS-limits proxy when there is one."""
        return self.proxy.endpoint_url if self.proxy is not None else self.server.endpoint_url

    def aws_limits_summary(self) -> dict[str, Any] | None:
        """What the AWS limits did to the traffic so far (``None`` without them): calls per
        operation, the ones throttled, empty pages served behind the tip."""
        if self.proxy is None:
            return None
        throttled: dict[str, int] = {}
        for exchange in self.proxy.injected():
            what = f"{exchange.operation}:{exchange.injected}"
            throttled[what] = throttled.get(what, 0) + 1
        semantics = self.proxy.semantics
        return {
            "semantics": "AwsSemantics.real()",
            "get_records_per_s_per_shard": semantics.rate(semantics.get_records_per_s),
            "read_bytes_per_s_per_shard": semantics.rate(semantics.read_bytes_per_s),
            "write_records_per_s_per_shard": semantics.rate(semantics.write_records_per_s),
            "write_bytes_per_s_per_shard": semantics.rate(semantics.write_bytes_per_s),
            "calls": dict(self.proxy.calls),
            "refused": throttled,
            "empty_pages": self.proxy.empty_pages,
            "proxy_failures": len(self.proxy.failures),
        }

    def new_client(self) -> Any:
        """A client of its own, e.g. for a thread (clients are cheap; sessions are not shared)."""
        return kinesis_client(REGION, self.url)

    def baseline_client(self) -> Any:
        """A plain ``boto3.client`` with the same retry and pool settings as
        :func:`kinesis_client`, but boto3's default response parsing (timestamps in the local
        zone through dateutil): what the baselines use, as a first consumer would.
        """
        return boto3.client(
            "kinesis",
            region_name=REGION,
            endpoint_url=self.url,
            config=client_config(),
        )

    def new_stream(self, label: str, shards: int) -> str:
        name = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        self.client.create_stream(StreamName=name, ShardCount=shards)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            summary = self.client.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                self._streams.append(name)
                return name
            time.sleep(0.1)
        raise TimeoutError(f"stream {name} not ACTIVE after 30 s")

    def delete_stream(self, name: str) -> None:
        """Frees moto's memory: it keeps every record of every stream."""
        with contextlib.suppress(Exception):
            self.client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        if name in self._streams:
            self._streams.remove(name)

    def close(self) -> None:
        for name in list(self._streams):
            self.delete_stream(name)
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
