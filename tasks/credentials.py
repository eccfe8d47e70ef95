"""An optional prefect-aws ``AwsCredentials`` block, applied as the standard AWS variables.

The library, its boto3 clients and Spark's executors all read the standard credential chain;
exporting the block's values to this flow run's environment makes every one of them use it
(a local Spark started afterwards inherits it). Nothing is logged but the block's name.
"""

from __future__ import annotations

import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def use_aws_credentials(block_name: str | None) -> bool:
    """Load the block and export it for this run; ``None`` keeps the standard chain."""
    if not block_name:
        return False
    from prefect_aws import AwsCredentials

    credentials = AwsCredentials.load(block_name)
    values = {
        "AWS_ACCESS_KEY_ID": credentials.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": (
            credentials.aws_secret_access_key.get_secret_value()
            if credentials.aws_secret_access_key
            else None
        ),
        "AWS_SESSION_TOKEN": credentials.aws_session_token,
        "AWS_PROFILE": credentials.profile_name,
        "AWS_REGION": credentials.region_name,
        "AWS_ENDPOINT_URL_KINESIS": credentials.aws_client_parameters.endpoint_url,
    }
    for name, value in values.items():
        if value:
            os.environ[name] = str(value)
    get_run_logger().info("using AWS credentials from block %r", block_name)
    return True
