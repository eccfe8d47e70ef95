"""Start and stop a Kinesis-compatible server on loopback: moto (default) or kinesis-mock.

Used by the test suite (on free ports) and by ``streamenrich local up`` (on 4566).

>>> server = start_local_kinesis(port=free_port())       # doctest: +SKIP
>>> server.endpoint_url                                   # doctest: +SKIP
'http://127.0.0.1:41234'
>>> server.stop()                                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

import boto3
from botocore.config import Config

Engine = Literal["moto", "kinesis-mock"]
ENGINES: tuple[Engine, ...] = ("moto", "kinesis-mock")
LOOPBACK = "127.0.0.1"
# Dummy credentials for local servers only; real AWS uses the standard chain.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class LocalServerError(RuntimeError):
    """The local server could not start (busy port, missing package, not ready in time)."""


@dataclass
class LocalKinesis:
    """A running local Kinesis endpoint started by this process."""

    engine: Engine
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None
    host: str = LOOPBACK
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server this object started (its process group, nothing else)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            # kinesis-mock ignores SIGTERM (measured): do not wait long for it.
            grace = 1.0 if self.engine == "kinesis-mock" else timeout_s
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_s)
        if self._log is not None:
            self._log.close()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def find_kinesis_mock() -> Path:
    """``main.js`` of the npm package ``kinesis-local`` (``npm install`` in the project)."""
    override = os.environ.get("STREAMENRICH_KINESIS_MOCK_JS")
    candidates = [Path(override)] if override else []
    project_root = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), project_root):
        candidates.append(base / "node_modules" / "kinesis-local" / "main.js")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LocalServerError(
        "kinesis-mock is not installed: run `npm install` in the project folder (package "
        "kinesis-local) or set STREAMENRICH_KINESIS_MOCK_JS to its main.js"
    )


def _command(engine: Engine, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if engine == "moto":
        return [
            sys.executable,
            "-m",
            "streamenrich.kinesis.moto_server",
            "-H",
            host,
            "-p",
            str(port),
        ], env
    main_js = find_kinesis_mock()
    node = shutil.which("node")
    if node is None:
        raise LocalServerError("kinesis-mock needs Node.js (`node` is not on PATH)")
    env.update(
        {
            "KINESIS_MOCK_PLAIN_PORT": str(port),
            "KINESIS_MOCK_TLS_PORT": str(free_port(host)),
            "KINESIS_MOCK_CERT_PATH": str(main_js.parent / "server.json"),
            "CREATE_STREAM_DURATION": env.get("CREATE_STREAM_DURATION", "100ms"),
            "DELETE_STREAM_DURATION": env.get("DELETE_STREAM_DURATION", "100ms"),
            "UPDATE_SHARD_COUNT_DURATION": env.get("UPDATE_SHARD_COUNT_DURATION", "200ms"),
            "LOG_LEVEL": env.get("LOG_LEVEL", "WARN"),
        }
    )
    return [node, str(main_js)], env


class Pollable(Protocol):
    """What readiness checks need of a process: ``Popen`` or a probe of a recorded pid."""

    returncode: int | None

    def poll(self) -> int | None: ...


def wait_until_ready(endpoint_url: str, timeout_s: float, process: Pollable) -> None:
    client = boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        aws_access_key_id=LOCAL_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=LOCAL_CREDENTIALS["aws_secret_access_key"],
    )
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"server exited with code {process.returncode} while starting")
        try:
            client.list_streams(Limit=1)
            return
        except Exception as exc:  # not up yet: connection refused, reset, ...
            last_error = exc
            time.sleep(0.1)
    raise LocalServerError(f"{endpoint_url} not ready after {timeout_s:.0f}s: {last_error}")


def start_local_kinesis(
    engine: Engine = "moto",
    port: int = 4566,
    *,
    host: str = LOOPBACK,
    log_path: Path | None = None,
    ready_timeout_s: float = 60.0,
) -> LocalKinesis:
    """Start a server and return once it answers ``ListStreams``.

    Raises :class:`LocalServerError` when the port is taken or the server does not come up.
    """
    if engine not in ENGINES:
        raise LocalServerError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not port_is_free(port, host):
        raise LocalServerError(f"port {host}:{port} is already in use")
    command, env = _command(engine, host, port)
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed by LocalKinesis.stop
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,
    )
    server = LocalKinesis(engine, port, process, log_path, host, log)
    try:
        wait_until_ready(server.endpoint_url, ready_timeout_s, process)
    except BaseException:
        server.stop()
        raise
    return server
