"""Run a deployment on a Prefect server and print its outcome as JSON (used by the e2e test).

Runs in its own process so that the test session's Prefect settings (the test harness)
are not mixed with the real server's: ``PREFECT_API_URL`` comes from the environment.

    python tests/prefect_run_job.py 'enrichment-pipeline/demo' '{"produce_events": 10}' 600
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment


async def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        # Artifacts of the flow's tasks carry the flow run id too.
        return {a.key or str(a.id): {"type": a.type, "data": a.data} for a in found}


async def _inspect(name: str) -> dict[str, Any]:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        return {
            "name": deployment.name,
            "schedules": [
                {"active": s.active, "interval": getattr(s.schedule, "interval", None)}
                for s in deployment.schedules
            ],
            "concurrency_limit": deployment.global_concurrency_limit.limit
            if deployment.global_concurrency_limit
            else None,
            "parameters": deployment.parameters,
        }


def main() -> None:
    if sys.argv[1] == "--inspect":
        print(json.dumps(asyncio.run(_inspect(sys.argv[2])), default=str))
        return
    name, parameters, timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    run = run_deployment(name, parameters=parameters, timeout=timeout)
    state = run.state
    print(
        json.dumps(
            {
                "flow_run_id": str(run.id),
                "state": state.type.value if state else None,
                "message": state.message if state else None,
                "artifacts": asyncio.run(_artifacts(run.id)),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
