"""Fixtures for the registry tests: the committed sample and small hand-made registry files."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from streamenrich.reference.contract import REGISTRY_COLUMNS

SAMPLE_CSV = Path(__file__).resolve().parents[2] / "reference_data" / "persons.csv"
HEADER = ",".join(REGISTRY_COLUMNS)
# Valid rows of every kind; tests change one thing at a time.
GOOD_ROWS: tuple[str, ...] = (
    "12345678-5,Ana María Soto Rojas,retail,CL-RM,low,false,1500000",
    "7654321-6,Benjamín Muñoz Díaz,premium,CL-VS,medium,true,8000000",
    "10000013-K,Catalina Pérez Fuentes,corporate,CL-BI,high,false,150000000",
)

WriteRegistry = Callable[..., Path]


@pytest.fixture
def write_registry(tmp_path: Path) -> WriteRegistry:
    """``write_registry(rows, header=HEADER, name="registry.csv")``: a CSV file of those lines.

    ``rows`` may also be ``bytes``, written as they are (for encodings and binary files).
    """

    def write(
        rows: Sequence[str] | bytes = GOOD_ROWS,
        header: str | None = HEADER,
        name: str = "registry.csv",
    ) -> Path:
        path = tmp_path / name
        if isinstance(rows, bytes):
            path.write_bytes(rows)
        else:
            lines = ([header] if header is not None else []) + list(rows)
            path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def sample_rows() -> list[dict[str, str]]:
    """The committed sample as text, read with the csv module (independent of the code)."""
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    return tmp_path / "data_docs"
