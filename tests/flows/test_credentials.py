"""The optional prefect-aws AwsCredentials block drives the same code as the standard chain."""

from __future__ import annotations

import uuid

import pytest

from flows.provision import provision_streams
from streamenrich.kinesis.client import kinesis_client

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_KINESIS",
)


def test_provisioning_with_a_credentials_block(
    prefect_harness: None, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    for name in AWS_VARIABLES:  # restored after the test, whatever the flow exports
        monkeypatch.delenv(name, raising=False)
    block = f"kinesis-{uuid.uuid4().hex[:8]}"
    AwsCredentials(
        aws_access_key_id="block-key",
        aws_secret_access_key="block-secret",
        region_name="sa-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_endpoint),
    ).save(block)
    tag = uuid.uuid4().hex[:6]
    names = [f"blk-in-{tag}", f"blk-out-{tag}", f"blk-dlq-{tag}"]

    statuses = provision_streams(*names, shards=1, aws_credentials_block=block)

    assert [s["name"] for s in statuses] == names
    assert all(":sa-east-1:" in s["arn"] for s in statuses)
    client = kinesis_client(region="sa-east-1", endpoint_url=moto_endpoint)
    listed = client.list_streams()["StreamNames"]
    assert set(names) <= set(listed)
