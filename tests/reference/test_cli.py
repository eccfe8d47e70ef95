"""The ``streamenrich reference`` commands: outputs, exit codes, and room for other groups."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamenrich import cli
from streamenrich.reference.generate import generate_registry_file
from tests.reference.conftest import GOOD_ROWS, SAMPLE_CSV, WriteRegistry


def test_generate_writes_the_file_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nested" / "people.csv"
    assert (
        cli.main(["reference", "generate", "--rows", "50", "--seed", "3", "--out", str(out)]) == 0
    )
    assert capsys.readouterr().out.startswith(f"wrote 50 rows (seed 3) to {out} in ")
    assert out.read_bytes() == generate_registry_file(50, 3, tmp_path / "same.csv").read_bytes()


def test_generate_refuses_an_unknown_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "people.xlsx"
    assert cli.main(["reference", "generate", "--rows", "5", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"streamenrich: error: registry file {out}: unknown suffix '.xlsx': "
        "use one of .csv, .parquet, .pq\n"
    )
    assert not out.exists()


def test_generate_refuses_negative_rows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["reference", "generate", "--rows", "-3", "--out", "x.csv"])
    assert caught.value.code == 2
    assert "argument --rows: must be 0 or more, got -3" in capsys.readouterr().err


def test_validate_passing_file_prints_markdown_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["reference", "validate", str(SAMPLE_CSV), "--docs-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"### Registry validation passed: `{SAMPLE_CSV}`")
    assert (tmp_path / "index.html").is_file()


def test_validate_failing_file_exits_1_with_json(
    write_registry: WriteRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_registry([*GOOD_ROWS, GOOD_ROWS[0]])
    code = cli.main(["reference", "validate", str(path), "--docs-dir", str(tmp_path), "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["success"] is False and report["row_count"] == 4
    failures = [r for r in report["results"] if not r["success"]]
    assert [(r["expectation_type"], r["unexpected_count"]) for r in failures] == [
        ("expect_column_values_to_be_unique", 2)
    ]


def test_validate_unreadable_file_exits_2(
    write_registry: WriteRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_registry(b"")
    assert cli.main(["reference", "validate", str(path), "--docs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"streamenrich: error: registry file {path}: is empty (0 bytes): "
        "a registry file has at least a header\n"
    )


def test_a_group_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2
    assert "the following arguments are required: GROUP" in capsys.readouterr().err


def test_other_groups_plug_in_through_command_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    def add_extra(groups: cli.SubParsers) -> None:
        extra = groups.add_parser("extra").add_subparsers(dest="command", required=True)
        extra.add_parser("go").set_defaults(handler=lambda args: 7)

    monkeypatch.setattr(cli, "COMMAND_GROUPS", [*cli.COMMAND_GROUPS, add_extra])
    assert cli.main(["extra", "go"]) == 7
    parser = cli.build_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(groups.choices) == ["extra", "local", "produce", "reference", "subscribe"]


def test_installed_entry_point_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("streamenrich")
    out = tmp_path / "p.parquet"
    done = subprocess.run(
        [str(script), "reference", "generate", "--rows", "10", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert out.is_file()
