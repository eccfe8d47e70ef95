"""A local Kinesis endpoint for one benchmark job: moto on a free loopback port, fresh streams.

>>> with LocalEndpoint.start() as endpoint:          # doctest: +SKIP
...     stream = endpoint.new_stream("input", shards=4)
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

REGION = "us-east-1"
# Dummy credentials and loopback only: a benchmark never reaches AWS.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "SPARK_LOCAL_IP": "127.0.0.1",
}


def use_local_environment() -> None:
    """Set before Spark starts: the JVM and its Python workers inherit this environment."""
    for key, value in LOCAL_ENVIRONMENT.items():
        os.environ[key] = value
    os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


class LocalEndpoint:
    """A moto server started by this process; every stream made here is deleted on exit."""

    def __init__(self, server: LocalKinesis) -> None:
        self.server = server
        self.client = kinesis_client(REGION, server.endpoint_url)
        self._streams: list[str] = []

    @classmethod
    def start(cls, log_path: Path | None = None) -> LocalEndpoint:
        use_local_environment()
        return cls(start_local_kinesis("moto", free_port(), log_path=log_path))

    @property
    def url(self) -> str:
        return self.server.endpoint_url

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
