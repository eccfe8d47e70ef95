"""Tasks retry transient AWS errors and nothing else (under the Prefect test harness)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prefect import flow

from streamenrich.kinesis.client import kinesis_client
from streamenrich.testing.proxy import KinesisProxy
from tasks.retries import retry_transient
from tasks.streams import provision_stream


@pytest.fixture
def proxy(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with KinesisProxy(moto_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", running.endpoint_url)
        yield running


@flow
def _provision(name: str) -> dict[str, Any]:
    return provision_stream.with_options(retry_delay_seconds=0)(name, 1)


def test_a_transient_error_is_retried_and_the_run_completes(
    prefect_harness: None, proxy: KinesisProxy, moto_endpoint: str
) -> None:
    name = f"retry-{uuid.uuid4().hex[:8]}"
    # Five throttled answers outlast botocore's own five attempts: the task fails once.
    proxy.fail("DescribeStreamSummary", "LimitExceededException", times=5)
    state = _provision(name, return_state=True)
    assert state.is_completed()
    assert state.result()["created"] is True
    assert len(proxy.injected("DescribeStreamSummary")) == 5
    summary = kinesis_client(endpoint_url=moto_endpoint).describe_stream_summary(StreamName=name)
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def test_a_final_error_is_not_retried(prefect_harness: None, proxy: KinesisProxy) -> None:
    proxy.fail("CreateStream", "AccessDeniedException")
    state = _provision(f"denied-{uuid.uuid4().hex[:8]}", return_state=True)
    assert state.is_failed()
    assert proxy.calls["CreateStream"] == 1
    with pytest.raises(Exception, match="AccessDeniedException"):
        state.result()


def test_retry_condition_reads_the_failed_state() -> None:
    from botocore.exceptions import ClientError
    from prefect.states import Failed

    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "X")
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "X")
    assert retry_transient(None, None, Failed(data=throttled))
    assert not retry_transient(None, None, Failed(data=denied))
