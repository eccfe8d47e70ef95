"""Subscribers of the output stream: independent, deduplicated, searchable by RUT."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamenrich.cli import main
from streamenrich.kinesis.client import kinesis_client
from tests.support import put_all

RUTS = ["12345678-5", "7654321-6", "10000013-K"]


def _output_records(n: int) -> list[tuple[str, bytes]]:
    records = []
    for i in range(n):
        rut = RUTS[i % 3]
        body = {
            "record_id": f"shardId-000000000000:{i}",
            "rut": rut,
            "rules": ["watchlisted_person"],
        }
        records.append((rut, json.dumps(body).encode()))
    return records


def test_two_subscribers_each_see_every_record_once(moto_endpoint: str, moto_stream: Any) -> None:
    from streamenrich.subscriber import Subscriber

    stream = moto_stream(shards=3)
    records = _output_records(300)
    client = kinesis_client(endpoint_url=moto_endpoint)
    put_all(client, stream, records)
    put_all(client, stream, records[:40])  # the at-least-once sink wrote these twice

    first = Subscriber(kinesis_client(endpoint_url=moto_endpoint), stream)
    second = Subscriber(kinesis_client(endpoint_url=moto_endpoint), stream)
    seen_first = [r["record_id"] for r in first.records()]
    seen_second = [r["record_id"] for r in second.records()]

    expected = {json.loads(d)["record_id"] for _, d in records}
    assert sorted(seen_first) == sorted(seen_second) == sorted(expected)
    assert first.duplicates == second.duplicates == 40


def test_search_by_rut_in_any_spelling(
    moto_endpoint: str, moto_stream: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    stream = moto_stream(shards=2)
    put_all(kinesis_client(endpoint_url=moto_endpoint), stream, _output_records(90))
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", moto_endpoint)

    assert main(["subscribe", "--stream", stream, "--rut", "7.654.321-6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 30
    assert {json.loads(line)["rut"] for line in lines} == {"7654321-6"}

    assert main(["subscribe", "--stream", stream, "--rut", "7.654.321-0"]) == 2
