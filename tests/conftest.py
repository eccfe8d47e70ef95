"""Shared fixtures: one Spark session, one local Kinesis endpoint per engine, fresh streams.

The contract tests (``endpoint``, ``new_stream``) run on both engines *through the
AWS-semantics layer*: an :class:`AwsKinesisProxy` per engine, in front of it, that throttles
per shard, returns empty pages behind the tip, expires iterators and checks call shapes as
AWS does (see docs/aws-semantics.md). Nothing is trimmed (``retention_s=None``): a test that
trims says so with its own proxy. ``engine_endpoint`` is the raw engine of the same run, for
a test that needs what the engine itself does (or wraps a proxy of its own around it).

Every server listens on a free loopback port (never the demo's fixed ports), and everything
started here is stopped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from streamenrich.testing.aws_kinesis import AwsKinesisProxy, AwsSemantics
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


# What the contract tests see: AWS's per-shard rates, empty pages behind the tip, 300 s
# iterators, call-shape limits; no retention (a record is never trimmed behind a test's back).
CONTRACT_SEMANTICS = dataclasses.replace(AwsSemantics.real(), retention_s=None)

# Test modules that wrap a proxy of their own around ``endpoint`` and so need the raw engine
# there, until they ask for ``engine_endpoint`` instead (their owners switch them over).
RAW_ENGINE_MODULES = frozenset({"test_aws_semantics", "test_local"})


class AwsEndpointFactory:
    """One AWS-semantics proxy per engine per test session, started on first use.

    Its rate budgets are per (stream, shard) and every test has fresh streams, so tests do
    not spend each other's budgets; the counters (``calls``, ``exchanges``, ...) are the
    whole session's: compare before and after, or use a proxy of the test's own.
    """

    def __init__(self, engines: EndpointFactory) -> None:
        self._engines = engines
        self._proxies: dict[str, AwsKinesisProxy] = {}

    def get(self, engine: str) -> AwsKinesisProxy:
        if engine not in self._proxies:
            upstream = self._engines.get(engine).endpoint_url
            proxy = AwsKinesisProxy(upstream, CONTRACT_SEMANTICS)
            proxy.start()
            self._proxies[engine] = proxy
        return self._proxies[engine]

    def stop_all(self) -> None:
        for proxy in self._proxies.values():
            proxy.stop()


@pytest.fixture(scope="session")
def aws_endpoints(endpoints: EndpointFactory) -> Iterator[AwsEndpointFactory]:
    factory = AwsEndpointFactory(endpoints)
    yield factory
    factory.stop_all()


@pytest.fixture(params=["moto", "kinesis-mock"])
def engine(request: pytest.FixtureRequest) -> str:
    """Contract tests run once per engine: its name."""
    return str(request.param)


@pytest.fixture
def engine_endpoint(engine: str, endpoints: EndpointFactory) -> str:
    """The raw engine of the test's run (no AWS semantics): to fill a stream fast, or to see
    what the engine itself does."""
    return endpoints.get(engine).endpoint_url


def _no_new_failures(proxy: AwsKinesisProxy) -> Iterator[AwsKinesisProxy]:
    before = len(proxy.failures)
    yield proxy
    assert proxy.failures[before:] == [], "the AWS-semantics proxy failed on a request"


@pytest.fixture
def aws_proxy(engine: str, aws_endpoints: AwsEndpointFactory) -> Iterator[AwsKinesisProxy]:
    """The session's AWS-semantics proxy in front of the test's engine."""
    yield from _no_new_failures(aws_endpoints.get(engine))


@pytest.fixture
def endpoint(request: pytest.FixtureRequest, engine: str, endpoints: EndpointFactory) -> str:
    """Contract tests run once per engine, through the AWS-semantics layer: its URL."""
    if request.module.__name__.rsplit(".", 1)[-1] in RAW_ENGINE_MODULES:
        return endpoints.get(engine).endpoint_url
    proxy: AwsKinesisProxy = request.getfixturevalue("aws_proxy")
    return proxy.endpoint_url


@pytest.fixture
def moto_endpoint(endpoints: EndpointFactory) -> str:
    """The raw moto server (no AWS semantics)."""
    return endpoints.get("moto").endpoint_url


@pytest.fixture
def kinesis_mock_endpoint(endpoints: EndpointFactory) -> str:
    """The raw kinesis-mock server (no AWS semantics)."""
    return endpoints.get("kinesis-mock").endpoint_url


@pytest.fixture
def aws_moto_endpoint(aws_endpoints: AwsEndpointFactory) -> Iterator[str]:
    """moto through the AWS-semantics layer."""
    for proxy in _no_new_failures(aws_endpoints.get("moto")):
        yield proxy.endpoint_url


@pytest.fixture
def aws_kinesis_mock_endpoint(aws_endpoints: AwsEndpointFactory) -> Iterator[str]:
    """kinesis-mock through the AWS-semantics layer."""
    for proxy in _no_new_failures(aws_endpoints.get("kinesis-mock")):
        yield proxy.endpoint_url


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
