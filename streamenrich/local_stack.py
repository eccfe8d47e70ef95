"""The local stack: a Kinesis endpoint, a Prefect server and a worker, all on loopback.

``streamenrich local up`` starts what is not running yet (idempotent), ``local down`` stops
exactly what ``up`` started (by the process ids it recorded), ``local status`` says what
runs. State lives under ``<home>/run`` and logs under ``<home>/logs``. Prefect is driven
through its command line in subprocesses: the library never imports Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamenrich.kinesis.local import (
    LOCAL_CREDENTIALS,
    LOOPBACK,
    LocalServerError,
    port_is_free,
    wait_until_ready,
)

WORK_POOL = "streamenrich-local"
COMPONENTS = ("kinesis", "prefect-server", "prefect-worker")


@dataclass(frozen=True)
class StackConfig:
    home: Path
    project_dir: Path
    kinesis_port: int = 4566
    prefect_port: int = 4200
    engine: str = "moto"
    work_pool: str = WORK_POOL

    @property
    def kinesis_url(self) -> str:
        return f"http://{LOOPBACK}:{self.kinesis_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.prefect_port}/api"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def environment(self) -> dict[str, str]:
        """What every process of the stack (and a client of it) needs in its environment."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_HOME": str((self.home / "prefect").resolve()),
                "PREFECT_API_URL": self.prefect_api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_API_HOST": LOOPBACK,
                "PREFECT_SERVER_API_PORT": str(self.prefect_port),
                "AWS_ENDPOINT_URL_KINESIS": self.kinesis_url,
                "AWS_REGION": env.get("AWS_REGION", "us-east-1"),
                "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
                "SPARK_LOCAL_IP": LOOPBACK,
                "PYSPARK_PYTHON": sys.executable,
            }
        )
        return env


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    detail: str


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recorded_pid(config: StackConfig, name: str) -> int | None:
    path = _pid_file(config, name)
    if not path.exists():
        return None
    pid = int(json.loads(path.read_text())["pid"])
    return pid if _alive(pid) else None


def _spawn(config: StackConfig, name: str, command: list[str]) -> int:
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(config.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        command,
        cwd=config.project_dir,
        env=config.environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    _pid_file(config, name).write_text(json.dumps({"pid": process.pid, "command": command}))
    return process.pid


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_http(url: str, timeout_s: float, pid: int, name: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _http_ok(url):
            return
        if not _alive(pid):
            raise LocalServerError(f"{name} exited while starting; see {log}")
        time.sleep(0.3)
    raise LocalServerError(f"{name} not healthy at {url} after {timeout_s:.0f}s; see {log}")


def _prefect(
    config: StackConfig, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "prefect", "--no-prompt", *args]
    return subprocess.run(
        command,
        cwd=config.project_dir,
        env=config.environment(),
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def start_kinesis(config: StackConfig) -> str:
    if _recorded_pid(config, "kinesis"):
        return f"kinesis already running at {config.kinesis_url}"
    if not port_is_free(config.kinesis_port):
        raise LocalServerError(
            f"port {LOOPBACK}:{config.kinesis_port} is busy: another Kinesis endpoint or program "
            "is using it; stop it or choose another port (STREAMENRICH_KINESIS_PORT)"
        )
    if config.engine == "moto":
        command = [sys.executable, "-m", "streamenrich.kinesis.moto_server"]
        command += ["-H", LOOPBACK, "-p", str(config.kinesis_port)]
    else:
        raise LocalServerError(f"engine {config.engine!r} is not supported by `local up`")
    pid = _spawn(config, "kinesis", command)
    wait_until_ready(config.kinesis_url, 60, _ProcessProbe(pid))
    return f"kinesis started at {config.kinesis_url} (pid {pid})"


class _ProcessProbe:
    """The part of ``Popen`` that :func:`wait_until_ready` uses, for a recorded pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if _alive(self.pid):
            return None
        self.returncode = -1
        return self.returncode


def start_prefect_server(config: StackConfig) -> str:
    health = f"http://{LOOPBACK}:{config.prefect_port}/api/health"
    if _recorded_pid(config, "prefect-server"):
        return f"prefect server already running at {config.prefect_api_url}"
    if not port_is_free(config.prefect_port):
        raise LocalServerError(
            f"port {LOOPBACK}:{config.prefect_port} is busy: stop what uses it or choose "
            "another port (STREAMENRICH_PREFECT_PORT)"
        )
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", LOOPBACK, "--port", str(config.prefect_port), "--analytics-off"]
    pid = _spawn(config, "prefect-server", command)
    _wait_http(health, 120, pid, "prefect server", config.log_dir / "prefect-server.log")
    return f"prefect server started at http://{LOOPBACK}:{config.prefect_port} (pid {pid})"


def ensure_work_pool(config: StackConfig) -> str:
    listed = _prefect(config, "work-pool", "inspect", config.work_pool, check=False)
    if listed.returncode == 0:
        return f"work pool {config.work_pool} exists"
    _prefect(config, "work-pool", "create", config.work_pool, "--type", "process")
    return f"work pool {config.work_pool} created"


def deploy(config: StackConfig) -> str:
    result = _prefect(config, "deploy", "--all", check=False)
    if result.returncode != 0:
        raise LocalServerError(f"prefect deploy failed:\n{result.stdout}\n{result.stderr}")
    return "deployments from prefect.yaml applied"


def start_worker(config: StackConfig) -> str:
    if _recorded_pid(config, "prefect-worker"):
        return f"worker already running on pool {config.work_pool}"
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", config.work_pool]
    pid = _spawn(config, "prefect-worker", command)
    return f"worker started on pool {config.work_pool} (pid {pid})"


def up(config: StackConfig) -> list[str]:
    """Start what is not running; returns one line per step."""
    steps = [start_kinesis(config), start_prefect_server(config)]
    steps += [ensure_work_pool(config), deploy(config), start_worker(config)]
    return steps


def stop_component(config: StackConfig, name: str, timeout_s: float = 15.0) -> str:
    pid = _recorded_pid(config, name)
    path = _pid_file(config, name)
    if pid is None:
        path.unlink(missing_ok=True)
        return f"{name}: not running"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return f"{name}: stopped (pid {pid})"


def down(config: StackConfig) -> list[str]:
    """Stop what :func:`up` started, worker first."""
    return [stop_component(config, name) for name in reversed(COMPONENTS)]


def status(config: StackConfig) -> list[ComponentStatus]:
    details = {
        "kinesis": config.kinesis_url,
        "prefect-server": f"http://{LOOPBACK}:{config.prefect_port}",
        "prefect-worker": f"pool {config.work_pool}",
    }
    out = []
    for name in COMPONENTS:
        pid = _recorded_pid(config, name)
        out.append(ComponentStatus(name, pid, pid is not None, details[name]))
    return out
