"""``streamenrich local``: clear messages, nothing started on a busy port, status says so."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from streamenrich.cli import main
from streamenrich.kinesis.local import free_port


def test_busy_port_is_reported_and_nothing_is_started(tmp_path: Path, capsys: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = ["--home", str(tmp_path), "--kinesis-port", str(port)]
        assert main(["local", "up", *home, "--prefect-port", str(free_port())]) == 2
    out = capsys.readouterr().out
    assert f"port 127.0.0.1:{port} is busy" in out
    assert not list(tmp_path.glob("run/*.json"))


def test_status_and_down_when_nothing_runs(tmp_path: Path, capsys: Any) -> None:
    args = ["--home", str(tmp_path), "--kinesis-port", str(free_port())]
    assert main(["local", "status", *args]) == 1
    status = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in status] == ["kinesis", "prefect-server", "prefect-worker"]
    assert all("stopped" in line for line in status)
    assert main(["local", "down", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "prefect-worker: not running",
        "prefect-server: not running",
        "kinesis: not running",
    ]
