"""End to end through a real Prefect server and worker: deployment runs, not function calls.

The stack (local Kinesis, Prefect server on SQLite, a process worker, prefect.yaml deployed)
is started once for this module on free ports, exactly as ``streamenrich local up`` does.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.local import free_port
from streamenrich.local_stack import StackConfig, down, up
from streamenrich.producer import generate_events
from streamenrich.publish import registry_ruts
from streamenrich.reference.contract import REGISTRY_COLUMNS
from tests.enrich.oracle import expect, output_record
from tests.support import drain, multiset

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
PERSONS = ROOT / "reference_data" / "persons.csv"
RULE_NAMES = (
    "near_credit_limit",
    "watchlisted_person",
    "high_risk_out_of_region",
    "atm_small_hours",
    "large_transfer_retail",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    config = StackConfig(
        home=tmp_path_factory.mktemp("stack"),
        project_dir=ROOT,
        kinesis_port=free_port(),
        prefect_port=free_port(),
    )
    try:
        up(config)
        yield config
    finally:
        down(config)


def _run(stack: StackConfig, *args: str, timeout: float = 900) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "prefect_run_job.py"), *args],
        env=stack.environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _registry() -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {}
    with PERSONS.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            typed = {
                **row,
                "watchlist": row["watchlist"] == "true",
                "credit_limit": int(row["credit_limit"]),
            }
            rows[row["rut"]] = [typed[c] for c in REGISTRY_COLUMNS]
    return rows


def _streams() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "input_stream": f"e2e-in-{tag}",
        "output_stream": f"e2e-out-{tag}",
        "dead_letter_stream": f"e2e-dlq-{tag}",
    }


def test_demo_deployment_publishes_exactly_the_oracles_matches(
    stack: StackConfig, tmp_path: Path
) -> None:
    streams = _streams()
    params = {
        **streams,
        "shards": 2,
        "produce_events": 2_000,
        "checkpoint_dir": str(tmp_path / "checkpoint"),
        "spark_master": "local[2]",
    }
    outcome = _run(stack, "enrichment-pipeline/demo", json.dumps(params), "900")
    assert outcome["state"] == "COMPLETED", outcome["message"]

    client = kinesis_client(endpoint_url=stack.kinesis_url)
    produced = generate_events(
        2_000, registry_ruts(str(PERSONS)), seed=0, unknown_share=0.1, malformed_share=0.05
    )
    inputs = _records_by_shard(client, streams["input_stream"])
    assert multiset((r["PartitionKey"], r["Data"]) for _, r in inputs) == multiset(produced)

    registry = _registry()
    expected: dict[str, dict[str, Any]] = {}
    dead_expected: dict[str, str | None] = {}
    buckets: Counter[str] = Counter()
    for shard, record in inputs:
        result = expect(record["Data"], registry, RULE_NAMES, "UTC")
        buckets[result.bucket] += 1
        record_id = f"{shard}:{record['SequenceNumber']}"
        if result.bucket == "matched":
            source = (
                record["Data"],
                streams["input_stream"],
                shard,
                record["PartitionKey"],
                record["SequenceNumber"],
                record["ApproximateArrivalTimestamp"],
            )
            expected[record_id] = output_record(result, source)
        elif result.bucket == "dead_letter":
            dead_expected[record_id] = result.reason

    published = {}
    for record in drain(client, streams["output_stream"]):
        body = json.loads(record["Data"])
        body.pop("processed_at")
        published[body["record_id"]] = body
    dead = {
        json.loads(r["Data"])["record_id"]: json.loads(r["Data"])["reason"]
        for r in drain(client, streams["dead_letter_stream"])
    }
    assert published == expected
    assert dead == dead_expected

    table = json.loads(outcome["artifacts"]["enrichment-buckets"]["data"])
    counts = {row["bucket"]: row["records"] for row in table}
    assert counts == {
        **{b: buckets[b] for b in ("matched", "unmatched", "unknown", "dead_letter")},
        "records read": 2_000,
    }
    assert "pipeline-summary" in outcome["artifacts"]
    assert "registry-validation" in outcome["artifacts"]


def _records_by_shard(client: Any, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record with its shard id (moto numbers records per shard, from 1)."""
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        response = client.get_records(ShardIterator=iterator, Limit=10_000)
        out.extend((shard["ShardId"], record) for record in response["Records"])
    return out


def test_a_failing_registry_fails_the_run_before_any_enrichment(
    stack: StackConfig, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    lines = PERSONS.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[0], lines[4].split(",")[0])  # duplicate RUT
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = {
        **_streams(),
        "shards": 1,
        "reference_path": str(bad),
        "checkpoint_dir": str(tmp_path / "checkpoint"),
        "produce_events": 100,
    }
    outcome = _run(stack, "enrichment-pipeline/demo", json.dumps(params), "600")
    assert outcome["state"] == "FAILED"
    assert not (tmp_path / "checkpoint").exists()  # no Spark query ever started
    assert "registry-validation" in outcome["artifacts"]
    assert "enrichment-buckets" not in outcome["artifacts"]


def test_provisioning_twice_changes_nothing(stack: StackConfig) -> None:
    params = {**_streams(), "shards": 2}
    first = _run(stack, "provision-streams/default", json.dumps(params), "300")
    second = _run(stack, "provision-streams/default", json.dumps(params), "300")
    assert first["state"] == second["state"] == "COMPLETED"
    client = kinesis_client(endpoint_url=stack.kinesis_url)
    for name in (params["input_stream"], params["output_stream"], params["dead_letter_stream"]):
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("ACTIVE", 2)


def test_scheduled_deployment_has_its_schedule(stack: StackConfig) -> None:
    deployment = _run(stack, "--inspect", "enrichment-pipeline/scheduled")
    assert deployment["schedules"] == [{"active": True, "interval": "0:15:00"}]
    assert deployment["concurrency_limit"] == 1
    assert deployment["parameters"]["mode"] == "available_now"
