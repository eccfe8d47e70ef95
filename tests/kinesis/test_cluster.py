"""The source and sink with executors in other processes: a Spark standalone cluster.

A master and one worker (2 cores, 2 GiB) start on loopback from the pip installation of
pyspark; a separate Python process (``cluster_copy_job.py``: one SparkContext per process,
and this session has its own) runs the driver against ``spark://127.0.0.1:<port>`` and copies
a 4-shard stream to another through ``readStream kinesis -> writeStream kinesis``. Every read
and every write then runs in the worker's executor JVM and its Python workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyspark
import pytest

from streamenrich.kinesis.client import kinesis_client
from streamenrich.kinesis.local import LOOPBACK, free_port
from tests.support import drain, multiset, put_all

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPARK_HOME = Path(pyspark.__file__).resolve().parent
JOB = Path(__file__).resolve().parent / "cluster_copy_job.py"
RECORDS = 10_000


@dataclass
class Daemon:
    """A master or worker JVM started here, in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self, timeout_s: float = 20.0) -> None:
        # The group holds the JVM and, for the worker, the executor JVMs it launched.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group, if any
        self.log.close()


@dataclass
class Cluster:
    master_url: str
    work_dir: Path
    started_s: float


def flags(**values: object) -> list[str]:
    """Command-line ``--name value`` pairs; an underscore in a name becomes a dash."""
    args: list[str] = []
    for name, value in values.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": LOOPBACK,
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
    )
    return env


def start_daemon(name: str, args: list[str], log_path: Path) -> Daemon:
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Daemon.stop
    process = subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), *args],
        env=cluster_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Daemon(name, process, log)


def master_state(ui: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=2) as response:
            state: dict[str, Any] = json.load(response)
            return state
    except OSError:
        return None


def wait_for(condition: Any, timeout_s: float, what: str, daemons: list[Daemon]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise RuntimeError(f"{daemon.name} exited with {daemon.process.returncode}")
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    port, master_web, worker_port, worker_web = (free_port() for _ in range(4))
    master_url = f"spark://{LOOPBACK}:{port}"
    master_ui = f"http://{LOOPBACK}:{master_web}"
    work_dir = tmp_path / "worker-work"
    work_dir.mkdir()
    started = time.monotonic()
    daemons: list[Daemon] = []
    try:
        daemons.append(
            start_daemon(
                "master",
                [
                    "org.apache.spark.deploy.master.Master",
                    *flags(host=LOOPBACK, port=port, webui_port=master_web),
                ],
                tmp_path / "master.log",
            )
        )
        wait_for(
            lambda: (master_state(master_ui) or {}).get("status") == "ALIVE",
            60,
            "master",
            daemons,
        )
        daemons.append(
            start_daemon(
                "worker",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    master_url,
                    *flags(
                        host=LOOPBACK,
                        port=worker_port,
                        webui_port=worker_web,
                        cores=2,
                        memory="2g",
                        work_dir=work_dir,
                    ),
                ],
                tmp_path / "worker.log",
            )
        )
        wait_for(
            lambda: (master_state(master_ui) or {}).get("aliveworkers") == 1,
            60,
            "worker registration",
            daemons,
        )
        yield Cluster(master_url, work_dir, time.monotonic() - started)
    finally:
        for daemon in reversed(daemons):  # worker (and its executors) first
            daemon.stop()


def run_job(args: list[str], log_path: Path, timeout_s: float) -> None:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(JOB), *args],
            env=cluster_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the driver JVM is its child: stopped with it
        )
        try:
            code = process.wait(timeout_s)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            # The driver JVM can outlive the Python that started it: stop the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert code == 0, f"the driver exited with {code}; see {log_path}"


def test_copy_on_a_standalone_cluster(
    cluster: Cluster, moto_endpoint: str, moto_stream: Any, tmp_path: Path
) -> None:
    source, target = moto_stream(shards=4), moto_stream(shards=2)
    client = kinesis_client(endpoint_url=moto_endpoint)
    rng = random.Random(23)
    records = [
        (f"rut-{rng.randrange(3_000)}", rng.randbytes(rng.randrange(1, 300)))
        for _ in range(RECORDS)
    ]
    put_all(client, source, records)

    report_path = tmp_path / "report.json"
    started = time.monotonic()
    run_job(
        flags(
            master=cluster.master_url,
            endpoint=moto_endpoint,
            source=source,
            target=target,
            checkpoint=tmp_path / "checkpoint",
            metadata=tmp_path / "metadata",
            report=report_path,
            driver_port=free_port(),
            block_manager_port=free_port(),
        ),
        tmp_path / "driver.log",
        timeout_s=600,
    )
    job_s = time.monotonic() - started
    report = json.loads(report_path.read_text())

    copied = drain(client, target)
    assert len(copied) == RECORDS
    assert multiset((r["PartitionKey"], r["Data"]) for r in copied) == multiset(records)
    assert report["rows"] == RECORDS
    # The registry index reached the executors (addFile) and their workers looked it up.
    assert report["lookup"] == sorted(
        [
            ["12345678-5", "P12345678"],
            ["1-9", None],
            [None, None],
            ["20000000-5", "P20000000"],
            ["3000000-5", None],
        ],
        key=lambda pair: str(pair[0]),
    )

    # The application ran on the worker: its executor folder holds the logs of the tasks
    # that read the source and wrote the sink...
    app_id = report["app_id"]
    executor_dirs = [d for d in (cluster.work_dir / app_id).iterdir() if d.is_dir()]
    assert executor_dirs, f"no executor ran for {app_id}"
    stderr = "".join((d / "stderr").read_text() for d in executor_dirs)
    finished = set(re.findall(r"Finished task (\S+) in stage (\S+)", stderr))
    # One read-and-write task per input shard for the copy, then the 4 probe tasks.
    assert len(finished) >= 4 + 4, sorted(finished)
    # ...and its Python workers are children of an executor JVM, with the venv's Python and
    # streamenrich importable from this project.
    project = Path(__file__).resolve().parents[2]
    for task in report["executors"]:
        assert "org.apache.spark.executor.CoarseGrainedExecutorBackend" in task["jvm"]
        assert f"--app-id {app_id}" in task["jvm"]
        assert task["python"] == sys.executable
        assert task["streamenrich"] == str(project / "streamenrich" / "__init__.py")

    print(
        f"cluster up in {cluster.started_s:.1f}s; driver process {job_s:.1f}s "
        f"(query {report['query_s']:.1f}s, {report['batches']} batches) for {RECORDS} records"
    )
