"""Shared fixtures: one Spark session, one local Kinesis endpoint per engine, fresh streams.

Every server listens on a free loopback port (never the demo's fixed ports), and everything
started here is stopped here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before Spark starts: the JVM and its Python workers inherit this environment.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ["AWS_ACCESS_KEY_ID"] = "local"
os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
os.environ["AWS_REGION"] = "us-east-1"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)
os.environ.pop("AWS_PROFILE", None)

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.local import LocalKinesis, free_port, start_local_kinesis
from tests.support import wait_active

ARTIFACTS = Path(__file__).resolve().parent.parent / ".streamenrich" / "test-logs"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    from streamenrich.kinesis import register

    session = (
        SparkSession.builder.master("local[2]")
        .appName("streamenrich-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.streaming.stopTimeout", "30s")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    register(session)
    yield session
    session.stop()


class EndpointFactory:
    """Starts each engine at most once per test session."""

    def __init__(self) -> None:
        self._servers: dict[str, LocalKinesis] = {}

    def get(self, engine: str) -> LocalKinesis:
        if engine not in self._servers:
            self._servers[engine] = start_local_kinesis(
                engine,  # type: ignore[arg-type]
                free_port(),
                log_path=ARTIFACTS / f"{engine}.log",
            )
        return self._servers[engine]

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="session")
def endpoints() -> Iterator[EndpointFactory]:
    factory = EndpointFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(params=["moto", "kinesis-mock"])
def endpoint(request: pytest.FixtureRequest, endpoints: EndpointFactory) -> str:
    """Contract tests run once per engine: the endpoint URL."""
    return endpoints.get(request.param).endpoint_url


@pytest.fixture
def moto_endpoint(endpoints: EndpointFactory) -> str:
    return endpoints.get("moto").endpoint_url


@pytest.fixture
def kinesis_mock_endpoint(endpoints: EndpointFactory) -> str:
    return endpoints.get("kinesis-mock").endpoint_url


StreamFactory = Callable[..., str]


def _stream_factory(endpoint_url: str) -> Iterator[StreamFactory]:
    client = kinesis_client(endpoint_url=endpoint_url)
    created: list[str] = []

    def make(shards: int = 1, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        client.create_stream(StreamName=name, ShardCount=shards)
        wait_active(client, name)
        created.append(name)
        return name

    yield make
    for name in created:
        # The server may be gone already; then there is nothing to clean.
        with contextlib.suppress(Exception):
            client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def new_stream(endpoint: str) -> Iterator[StreamFactory]:
    """``new_stream(shards)`` makes a uniquely named stream on the test's endpoint."""
    yield from _stream_factory(endpoint)


@pytest.fixture
def moto_stream(moto_endpoint: str) -> Iterator[StreamFactory]:
    yield from _stream_factory(moto_endpoint)


@pytest.fixture
def kinesis_mock_stream(kinesis_mock_endpoint: str) -> Iterator[StreamFactory]:
    yield from _stream_factory(kinesis_mock_endpoint)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (SQLite) for every in-process flow test."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
