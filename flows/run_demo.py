"""``make demo``: run the demo deployment on the local Prefect server and show what it did.

Expects the local stack to be up (``streamenrich local up``) and ``PREFECT_API_URL`` /
``AWS_ENDPOINT_URL_KINESIS`` to point at it (the Makefile sets both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from prefect.deployments import run_deployment
from prefect.states import StateType

from streamenrich.kinesis.client import kinesis_client
from streamenrich.subscriber import Subscriber


def _show_matches(stream: str, how_many: int) -> None:
    records = []
    for record in Subscriber(kinesis_client(), stream, start="trim-horizon").records():
        records.append(record)
        if len(records) >= how_many:
            break
    print(f"\nA few matched records from '{stream}' (of {how_many} shown):")
    for record in records:
        person = record.get("person", {})
        print(
            f"  {record['record_id']:<28} rut {record['rut']:<11} {record['amount']:>13,} CLP "
            f"{record['channel']:<8} rules={','.join(record['rules'])} "
            f"risk={person.get('risk_level')} watchlist={person.get('watchlist')}"
        )


def _enrichment_summary(flow_run_id: Any) -> dict[str, Any]:
    """The run's summary, from the artifacts its tasks published (results are not stored)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        by_key = {a.key: a.data for a in found if a.key}
        table = by_key["enrichment-buckets"]
        rows = json.loads(table) if isinstance(table, str) else table
        summary: dict[str, Any] = {row["bucket"]: row["records"] for row in rows}
        summary["records_read"] = summary.pop("records read")
        summary["markdown"] = by_key.get("enrichment-run", "")
        return summary

    return asyncio.run(read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployment", default="enrichment-pipeline/demo")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"Running {args.deployment} with {args.events:,} events (this takes a minute)...")
    run = run_deployment(
        args.deployment, parameters={"produce_events": args.events}, timeout=args.timeout
    )
    elapsed = time.monotonic() - started
    ui = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").removesuffix("/api")
    link = f"{ui}/runs/flow-run/{run.id}"
    state = run.state
    if state is None or state.type != StateType.COMPLETED:
        print(f"The run ended {state.name if state else 'without a state'}: {link}")
        return 1
    run_report = _enrichment_summary(run.id)
    print(f"\nFlow run completed in {elapsed:.0f} s: {link}\n")
    print(f"  records read   {run_report['records_read']:>8,}")
    buckets = ("matched", "unmatched", "unknown", "dead_letter")
    for bucket in buckets:
        print(f"  {bucket:<14} {run_report[bucket]:>8,}")
    balanced = sum(run_report[b] for b in buckets) == run_report["records_read"]
    print(f"  buckets add up to records read: {'yes' if balanced else 'NO'}")
    for line in str(run_report["markdown"]).splitlines():
        if "micro-batches" in line or "Latency" in line:
            print(f"  {line}")
    _show_matches("enriched", 5)
    print("\nExplore: the Prefect UI above; `uv run streamenrich subscribe --rut <RUT>`;")
    print("stop everything with `make down`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
