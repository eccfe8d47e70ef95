"""The ``streamenrich`` command line: ``streamenrich <group> <command> [options]``.

Groups: ``reference`` (``generate``, ``validate``), ``local`` (``up``, ``down``, ``status``),
``produce`` and ``subscribe``. A group is a function that adds its
sub-parser and sets a ``handler`` on each command (``handler(args) -> exit code``); list it
in :data:`COMMAND_GROUPS`. Handlers import what they need, so ``--help`` stays fast.

Exit codes: 0 success; 1 the command ran and found a problem (a registry that fails its
expectations); 2 bad usage or an input that cannot be processed (a file that is not a
registry).

    streamenrich reference generate --rows 1000000 --seed 7 --out registry.parquet
    streamenrich reference validate reference_data/persons.csv --docs-dir docs/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeAlias

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_reference_commands(groups: SubParsers) -> None:
    from streamenrich.reference.generate import SAMPLE_ROWS, SAMPLE_SEED

    reference = groups.add_parser("reference", help="the reference registry of people")
    commands = reference.add_subparsers(dest="command", metavar="COMMAND", required=True)

    generate = commands.add_parser(
        "generate",
        help="write a deterministic synthetic registry (CSV or Parquet by the suffix)",
        description="Same rows, seed and library versions give a byte-identical file.",
    )
    generate.add_argument("--rows", type=row_count, default=SAMPLE_ROWS, help="people")
    generate.add_argument("--seed", type=int, default=SAMPLE_SEED, help="random seed")
    generate.add_argument("--out", type=Path, required=True, help="a .csv or .parquet path")
    generate.set_defaults(handler=_generate)

    validate = commands.add_parser(
        "validate",
        help="validate a registry file with Great Expectations and build Data Docs",
        description="Exit 0 if every expectation is met, 1 if not, 2 if the file is unreadable.",
    )
    validate.add_argument("path", type=Path, help="a registry .csv or .parquet file")
    validate.add_argument(
        "--docs-dir", type=Path, default=None, help="Data Docs folder (.streamenrich/data_docs)"
    )
    validate.add_argument("--suite", type=Path, default=None, help="expectation suite JSON")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(handler=_validate)


def _more_groups() -> list[Callable[[SubParsers], None]]:
    from streamenrich.commands.local import add_local_commands
    from streamenrich.commands.streams import add_stream_commands

    return [add_local_commands, add_stream_commands]


COMMAND_GROUPS: list[Callable[[SubParsers], None]] = [
    add_reference_commands,
    *_more_groups(),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamenrich", description="Kinesis stream enrichment with Spark and Prefect."
    )
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for add_group in COMMAND_GROUPS:
        add_group(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def _generate(args: argparse.Namespace) -> int:
    from streamenrich.reference.generate import generate_registry_file
    from streamenrich.reference.registry import RegistryFileError

    started = time.perf_counter()
    try:
        path = generate_registry_file(args.rows, args.seed, args.out)
    except (RegistryFileError, ValueError) as exc:
        print(f"streamenrich: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    elapsed = time.perf_counter() - started
    print(f"wrote {args.rows:,} rows (seed {args.seed}) to {path} in {elapsed:.2f} s")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from streamenrich.reference.expectations import DEFAULT_SUITE_PATH, ExpectationSuiteError
    from streamenrich.reference.registry import RegistryFileError
    from streamenrich.reference.validation import validate_registry

    try:
        report = validate_registry(
            args.path, args.docs_dir, suite_path=args.suite or DEFAULT_SUITE_PATH
        )
    except (RegistryFileError, ExpectationSuiteError) as exc:
        print(f"streamenrich: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(asdict(report), default=str, indent=2))
    else:
        print(report.to_markdown(), end="")
    return EXIT_OK if report.success else EXIT_FAILED


def row_count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
