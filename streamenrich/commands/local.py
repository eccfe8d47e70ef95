"""``streamenrich local up|down|status``: the local stack (Kinesis, Prefect server, worker)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_local_commands(groups: Any) -> None:
    local = groups.add_parser("local", help="the local stack: Kinesis endpoint, Prefect, worker")
    commands = local.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, handler, text in (
        ("up", _up, "start what is not running and apply prefect.yaml (idempotent)"),
        ("down", _down, "stop exactly what `up` started"),
        ("status", _status, "say what runs"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--kinesis-port", type=int, default=None, help="default 4566")
        command.add_argument("--prefect-port", type=int, default=None, help="default 4200")
        command.add_argument("--home", type=Path, default=None, help="default .streamenrich")
        command.set_defaults(handler=handler)


def _config(args: argparse.Namespace) -> Any:
    from streamenrich.config import load_settings
    from streamenrich.local_stack import StackConfig

    settings = load_settings(
        kinesis_port=args.kinesis_port, prefect_port=args.prefect_port, home=args.home
    )
    return StackConfig(
        home=settings.home.resolve(),
        project_dir=Path.cwd(),
        kinesis_port=settings.kinesis_port,
        prefect_port=settings.prefect_port,
    )


def _up(args: argparse.Namespace) -> int:
    from streamenrich.kinesis.local import LocalServerError
    from streamenrich.local_stack import up

    config = _config(args)
    try:
        for line in up(config):
            print(line)
    except LocalServerError as exc:
        print(f"streamenrich: error: {exc}")
        return 2
    print(f"Prefect UI: http://127.0.0.1:{config.prefect_port}   logs: {config.log_dir}")
    print(f"export PREFECT_API_URL={config.prefect_api_url}")
    print(f"export AWS_ENDPOINT_URL_KINESIS={config.kinesis_url}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from streamenrich.local_stack import down

    for line in down(_config(args)):
        print(line)
    return 0


def _status(args: argparse.Namespace) -> int:
    from streamenrich.local_stack import status

    states = status(_config(args))
    for state in states:
        running = f"running (pid {state.pid})" if state.running else "stopped"
        print(f"{state.name:15} {running:22} {state.detail}")
    return 0 if all(s.running for s in states) else 1
