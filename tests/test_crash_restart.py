"""The enrichment job SIGKILLed at random moments while a producer writes, restarted each time.

A seeded producer writes a known set of events (matches, non-matches, unknown people and
malformed records) into a 4-shard stream at a steady rate. Meanwhile the job
(``tests/crash_restart_job.py``, a process group of its own: Python driver, driver JVM,
Python workers) is started on one checkpoint and metadata folder and killed with SIGKILL at
seeded moments: during start-up, in the middle of a micro-batch (read and publish under
way), and just after a batch was published but before Spark could commit it (a full
replay). After the producer is done, one last start runs ``available_now`` to the end.

Then the output and dead-letter streams are drained with plain boto3 and held to the
plain-Python oracle (``tests/enrich/oracle.py``): grouped by ``record_id``, every record the
oracle publishes is there, nothing else is, every duplicate is byte-identical to its first
copy (``processed_at`` included: it is the micro-batch's timestamp, which Spark keeps in its
offset log, so a replay writes it again unchanged), and the first copy equals the oracle's
record. The counts of each micro-batch (every attempt of it) must agree and add up to the
oracle's buckets.

Everything a run did is kept under ``.streamenrich/test-logs/crash-restart/``: each start's
Spark log and event log, the kill schedule, and on failure a JSON of the evidence (the
records missing, extra or differing, with the batch that published each copy).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamenrich.enrich import BUCKETS, RuleSet
from streamenrich.kinesis.client import list_shards
from streamenrich.producer import generate_events
from streamenrich.reference.contract import REGISTRY_COLUMNS
from streamenrich.reference.generate import generate_registry, write_registry
from tests.enrich import oracle
from tests.support import put_all

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "reference_data" / "rules.yaml"
LOGS = ROOT / ".streamenrich" / "test-logs" / "crash-restart"
SEED = 20260412
EVENTS = 3_000
INPUT_SHARDS = 4
PEOPLE = 2_000
# About 40 s of writing in all, in a call every 0.1 s.
RATE_PER_S = 75.0
PRODUCER_INTERVAL_S = 0.1
# Per shard and batch: several batches per start, so that kills land between and inside them.
MAX_RECORDS_PER_SHARD = 40
# The last start catches up in larger batches (a restart with another limit: the batch it
# replays keeps the limit it was planned with).
FINAL_MAX_RECORDS_PER_SHARD = 400
# After-publish kills: the batch waits this long before returning (and Spark committing it).
LINGER_S = 1.5
# Generous bounds on waiting (a shared, noisy machine); they fail a stuck run, nothing else.
STEP_TIMEOUT_S = 400.0
FINAL_RUN_TIMEOUT_S = 400.0
# Rules read hours in the session time zone; the job's Spark session uses UTC.
TIME_ZONE = "UTC"


@dataclass
class Kill:
    """When to kill one start: ``wait`` for the ``nth`` such step, then ``delay_s`` more."""

    kind: str
    wait: str  # "spawn" | "batch_start" | "batch_done"
    nth: int
    delay_s: float
    done: dict[str, Any] = field(default_factory=dict)


def kill_plan(rng: random.Random) -> list[Kill]:
    """Early, mid-batch and after-batch kills, in a seeded order with seeded delays."""
    later = [
        # A restart's first batch takes seconds (Python workers, code generation).
        Kill("first batch of a restart", "batch_start", 1, rng.uniform(0.0, 3.0)),
        Kill("mid-batch", "batch_start", rng.randint(2, 4), rng.uniform(0.0, 0.8)),
        Kill("after publish, before commit", "batch_done", rng.randint(1, 3), rng.uniform(0, 0.5)),
    ]
    rng.shuffle(later)
    # The first start is killed early: the producer is running, the query not yet.
    early = Kill("early (start-up, before the query runs)", "spawn", 0, rng.uniform(1.0, 6.0))
    return [early, *later]


class EventTail:
    """Reads the job's event log as it grows (JSON lines; a half-written line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seen: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.seen.extend(lines)
        return lines


class JobProcess:
    """One start of the job: its own session (process group), its own logs."""

    def __init__(self, number: int, argv: list[str], folder: Path) -> None:
        self.number = number
        self.events = EventTail(folder / f"start-{number}.events.jsonl")
        self.log_path = folder / f"start-{number}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*argv, "--events", str(self.events.path)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def failure(self, what: str) -> str:
        tail = self.log_path.read_text(errors="replace")[-4000:]
        return f"start {self.number}: {what} (log {self.log_path}):\n{tail}"

    def wait_for(self, step: str, nth: int) -> dict[str, Any]:
        """The ``nth`` event ``step`` of this start (counted from 1)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            self.events.poll()
            found = [e for e in self.events.seen if e["step"] == step]
            if len(found) >= nth:
                return found[nth - 1]
            if self.process.poll() is not None:
                raise AssertionError(self.failure(f"exited {self.process.returncode} early"))
            time.sleep(0.01)
        raise AssertionError(self.failure(f"no {step} #{nth} within {STEP_TIMEOUT_S}s"))

    def kill(self) -> None:
        # The session id is the child's pid: driver, JVM and Python workers are all in it.
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def finish(self, timeout_s: float) -> None:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(self.failure(f"did not finish in {timeout_s}s")) from None
        self._log.close()
        if code != 0:
            raise AssertionError(self.failure(f"exited {code}"))


class Producer(threading.Thread):
    """Writes the events in small calls at a steady rate, with plain boto3 (``put_all``).

    It never runs ahead of the kills: before kill ``k`` (of ``n``) it writes at most
    ``(k + 1) / (n + 1)`` of the events and waits there, so every kill lands while events
    are still being written however slowly the job starts on a busy machine. ``sent`` is how
    many are stored so far.
    """

    def __init__(
        self, client: Any, stream: str, events: list[tuple[str, bytes]], kills: int
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.stream, self.events, self.kills = client, stream, events, kills
        self.sent = 0
        self.killed = 0
        self.paused_s = 0.0
        self.error: BaseException | None = None
        self._changed = threading.Condition()

    def kill_done(self, everything: bool = False) -> None:
        """One more kill happened (``everything``: stop holding back)."""
        with self._changed:
            self.killed = self.kills if everything else self.killed + 1
            self._changed.notify_all()

    def _allowed(self) -> int:
        if self.killed >= self.kills:
            return len(self.events)
        return len(self.events) * (self.killed + 1) // (self.kills + 1)

    def run(self) -> None:
        chunk = max(1, round(RATE_PER_S * PRODUCER_INTERVAL_S))
        try:
            while self.sent < len(self.events):
                with self._changed:
                    paused = time.monotonic()
                    while self.sent >= self._allowed():
                        self._changed.wait()
                    self.paused_s += time.monotonic() - paused
                due = time.monotonic() + PRODUCER_INTERVAL_S
                end = min(self.sent + chunk, len(self.events), self._allowed())
                put_all(self.client, self.stream, self.events[self.sent : end])
                self.sent = end
                time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # reported by the test, never lost
            self.error = exc


def plain_client(endpoint: str) -> Any:
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")


def read_input(client: Any, stream: str) -> list[tuple[bytes, str, str, str, str, datetime]]:
    """Every input record as the oracle's source row: data, stream, shard, key, seq, arrival."""
    rows = []
    for shard in list_shards(client, stream):
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            rows += [
                (
                    r["Data"],
                    stream,
                    shard.shard_id,
                    r["PartitionKey"],
                    r["SequenceNumber"],
                    r["ApproximateArrivalTimestamp"],
                )
                for r in page["Records"]
            ]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return rows


def read_copies(client: Any, stream: str) -> dict[str, list[tuple[str, bytes]]]:
    """Every record of an output stream, ``(partitionKey, data)``, grouped by ``record_id``."""
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for row in read_input(client, stream):
        groups[json.loads(row[0])["record_id"]].append((row[3], row[0]))
    return dict(groups)


def batch_of_timestamp(checkpoint: Path) -> dict[int, int]:
    """Spark's offset log: each batch's timestamp (ms) -> batch id (``processed_at``'s batch)."""
    found: dict[int, int] = {}
    offsets = checkpoint / "offsets"
    for path in offsets.iterdir() if offsets.exists() else ():
        if path.name.isdigit():
            meta = json.loads(path.read_text().splitlines()[1])
            found[int(meta["batchTimestampMs"])] = int(path.name)
    return found


def offset_log(checkpoint: Path) -> dict[int, Any]:
    """Spark's offset log: each batch's source offset (where each shard's read starts)."""
    offsets = checkpoint / "offsets"
    return {
        int(path.name): [json.loads(line) for line in path.read_text().splitlines()[2:]]
        for path in (offsets.iterdir() if offsets.exists() else ())
        if path.name.isdigit()
    }


def copies_by_batch(
    groups: dict[str, list[tuple[str, bytes]]], batches: dict[int, int]
) -> dict[str, int]:
    """How the duplicates came about: "batches of the copies" -> how many records so."""
    found = Counter(
        ",".join(str(processed_batch(data, batches)) for _, data in group)
        for group in groups.values()
        if len(group) > 1
    )
    return dict(sorted(found.items()))


def processed_batch(data: bytes, batches: dict[int, int]) -> int | None:
    stamp = datetime.fromisoformat(json.loads(data)["processed_at"])
    return batches.get(round(stamp.timestamp() * 1000))


def expected_dead_letter(exp: oracle.Expected, row: tuple[Any, ...]) -> dict[str, Any]:
    data, stream, shard, key, sequence, arrival = row
    return {
        "record_id": f"{shard}:{sequence}",
        "reason": exp.reason,
        "data_base64": base64.b64encode(data).decode(),
        "partition_key": key,
        "source": {
            "stream": stream,
            "shard": shard,
            "sequence_number": sequence,
            "arrival_time": oracle.utc_text(arrival),
        },
    }


def compare(
    name: str,
    copies: dict[str, list[tuple[str, bytes]]],
    expected: dict[str, dict[str, Any]],
    batches: dict[int, int],
) -> dict[str, Any]:
    """What differs between a stream's copies and the oracle's records (empty: nothing)."""
    problems: dict[str, Any] = {}
    missing = sorted(set(expected) - set(copies))
    extra = sorted(set(copies) - set(expected))
    differing, wrong = {}, {}
    for record_id, group in copies.items():
        first = group[0]
        if any(copy != first for copy in group[1:]):
            differing[record_id] = [
                {
                    "partition_key": key,
                    "data": data.decode(errors="replace"),
                    "batch": processed_batch(data, batches),
                }
                for key, data in group
            ]
        if record_id in expected:
            got = json.loads(first[1])
            got.pop("processed_at", None)
            if "data_base64" in got:
                # Spark's base64() writes MIME-style lines (CRLF every 76 characters).
                got["data_base64"] = "".join(got["data_base64"].split())
            if got != expected[record_id]:
                wrong[record_id] = {"got": got, "expected": expected[record_id]}
    for label, value in (
        ("missing", missing),
        ("extra", extra),
        ("differing_duplicates", differing),
        ("not_as_oracle", wrong),
    ):
        if value:
            problems[label] = value
    if problems:
        problems["stream"] = name
    return problems


@pytest.mark.slow
def test_killed_and_restarted_job_publishes_exactly_the_oracles_records(
    moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    folder = LOGS / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)

    table = generate_registry(PEOPLE, SEED)
    registry_path = write_registry(table, tmp_path / "people.parquet")
    columns = [table.column(name).to_pylist() for name in REGISTRY_COLUMNS]
    people = {row[0]: row for row in zip(*columns, strict=True)}
    events = generate_events(
        EVENTS, list(people), seed=SEED, unknown_share=0.15, malformed_share=0.1
    )
    streams = {
        "input": moto_stream(shards=INPUT_SHARDS, prefix="crash-in"),
        "output": moto_stream(shards=2, prefix="crash-out"),
        "dead-letter": moto_stream(shards=1, prefix="crash-dl"),
    }
    checkpoint = tmp_path / "checkpoint"
    argv = [
        sys.executable,
        "-m",
        "tests.crash_restart_job",
        "--endpoint",
        moto_endpoint,
        *(arg for key, stream in streams.items() for arg in (f"--{key}", stream)),
        "--registry",
        str(registry_path),
        "--checkpoint",
        str(checkpoint),
        "--metadata",
        str(tmp_path / "kinesis-metadata"),
        "--work",
        str(tmp_path / "work"),
    ]
    limit = ["--max-records-per-shard", str(MAX_RECORDS_PER_SHARD)]

    kills = kill_plan(rng)
    producer = Producer(plain_client(moto_endpoint), streams["input"], events, len(kills))
    producer.start()
    job = None
    try:
        for number, kill in enumerate(kills):
            linger = ["--linger-s", str(LINGER_S)] if kill.wait == "batch_done" else []
            job = JobProcess(number, [*argv, *limit, "--mode", "continuous", *linger], folder)
            seen = None if kill.wait == "spawn" else job.wait_for(kill.wait, kill.nth)
            time.sleep(kill.delay_s)
            job.events.poll()
            job.kill()
            kill.done = {
                "start": number,
                "after_s": round(time.monotonic() - job.started, 2),
                "trigger": seen,
                "last_event": job.events.seen[-1] if job.events.seen else None,
                "producer_sent": producer.sent,
            }
            producer.kill_done()
    finally:
        if job is not None and job.process.poll() is None:
            job.kill()  # a step that failed: leave nothing running
        producer.kill_done(everything=True)  # never leave it waiting
        (folder / "kills.json").write_text(json.dumps([asdict(k) for k in kills], indent=2))
    producer.join(STEP_TIMEOUT_S)
    assert not producer.is_alive(), "the producer did not finish"
    assert producer.error is None, f"the producer failed: {producer.error!r}"

    final_limit = ["--max-records-per-shard", str(FINAL_MAX_RECORDS_PER_SHARD)]
    final = JobProcess(len(kills), [*argv, *final_limit, "--mode", "available_now"], folder)
    final.finish(FINAL_RUN_TIMEOUT_S)

    # The oracle, from the input stream as stored (record ids are shard:sequence).
    client = plain_client(moto_endpoint)
    inputs = read_input(client, streams["input"])
    assert Counter((row[3], row[0]) for row in inputs) == Counter(events)
    rule_names = RuleSet.from_file(RULES).names
    outcome = {
        f"{row[2]}:{row[4]}": (oracle.expect(row[0], people, rule_names, TIME_ZONE), row)
        for row in inputs
    }
    buckets = Counter(exp.bucket for exp, _ in outcome.values())
    assert sum(buckets.values()) == len(events)
    assert all(buckets[name] > 50 for name in BUCKETS), buckets
    matched = {
        rid: oracle.output_record(exp, row)
        for rid, (exp, row) in outcome.items()
        if exp.bucket == "matched"
    }
    dead = {
        rid: expected_dead_letter(exp, row)
        for rid, (exp, row) in outcome.items()
        if exp.bucket == "dead_letter"
    }

    batches = batch_of_timestamp(checkpoint)
    output = read_copies(client, streams["output"])
    dead_letters = read_copies(client, streams["dead-letter"])
    problems = [
        p
        for p in (
            compare("output", output, matched, batches),
            compare("dead-letter", dead_letters, dead, batches),
        )
        if p
    ]

    # Each micro-batch's counts, from every start that finished it: a replayed batch must
    # count exactly what its first attempt counted, and the batches add up to the oracle.
    done: dict[int, list[dict[str, int]]] = defaultdict(list)
    for path in sorted(folder.glob("start-*.events.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["step"] == "batch_done":
                done[event["batch"]].append(event["counts"])
    replays_differ = {b: c for b, c in done.items() if any(x != c[0] for x in c)}
    counted: Counter[str] = Counter()
    for attempts in done.values():
        counted.update(attempts[0])
    duplicates = sum(len(g) - 1 for g in (*output.values(), *dead_letters.values()))
    summary = {
        "oracle_buckets": dict(buckets),
        "counted_by_batches": dict(counted),
        "batches": len(done),
        "replayed_batches": sorted(b for b, c in done.items() if len(c) > 1),
        "replays_that_differ": replays_differ,
        "published_duplicates": duplicates,
        "duplicates_by_batches_of_copies": {
            "output": copies_by_batch(output, batches),
            "dead-letter": copies_by_batch(dead_letters, batches),
        },
        "kills": [k.done | {"kind": k.kind} for k in kills],
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    unbalanced = {name: counted[name] for name in BUCKETS} != {n: buckets[n] for n in BUCKETS}
    if problems or replays_differ or unbalanced:
        evidence = {"problems": problems, "summary": summary, "offsets": offset_log(checkpoint)}
        (folder / "evidence.json").write_text(json.dumps(evidence, indent=2, default=str))
    brief = [{k: (v if k == "stream" else len(v)) for k, v in p.items()} for p in problems]
    assert not brief, f"see {folder / 'evidence.json'}: {brief}"
    assert not replays_differ, f"replayed batches counted differently: {replays_differ}"
    assert not unbalanced, f"batches counted {dict(counted)}, the oracle {dict(buckets)}"
