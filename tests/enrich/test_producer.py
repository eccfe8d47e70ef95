"""The synthetic event generator: deterministic, and covering what the tests rely on."""

from __future__ import annotations

import json

import pytest

from streamenrich.producer import MALFORMED_KINDS, RUT_SPELLINGS, generate_events, spell_rut
from streamenrich.reference.rut import format_rut, normalize_rut
from tests.enrich import oracle

KNOWN = [format_rut(body) for body in (12_345_678, 10_000_013, 7_654_321, 20_000_000)]


def test_same_arguments_same_records() -> None:
    first = generate_events(2_000, KNOWN, seed=3)
    assert first == generate_events(2_000, KNOWN, seed=3)
    assert first != generate_events(2_000, KNOWN, seed=4)
    assert all(isinstance(k, str) and k and isinstance(d, bytes) for k, d in first)


@pytest.mark.parametrize("spelling", RUT_SPELLINGS)
def test_every_spelling_normalizes_back(spelling: str) -> None:
    for canonical in KNOWN:
        assert normalize_rut(spell_rut(canonical, spelling)) == canonical
    assert spell_rut("10000013-K", "dotted") == "10.000.013-K"


def test_shares_and_partition_keys() -> None:
    records = generate_events(5_000, KNOWN, seed=1, unknown_share=0.2, malformed_share=0.1)
    outcomes = [(key, data, *oracle.classify(data)) for key, data in records]
    events = [(key, data, event) for key, data, reason, event in outcomes if event]
    dead = len(records) - len(events)
    assert 400 <= dead <= 600  # every malformed record is a dead letter, and only those
    unknown = sum(event["rut"] not in KNOWN for _, _, event in events)
    assert 0.15 < unknown / len(events) < 0.25
    for key, data, _ in events:
        assert key == json.loads(data)["rut"]  # the RUT as sent


def test_no_known_ruts_means_all_unknown() -> None:
    records = generate_events(200, [], seed=2, malformed_share=0)
    assert all(normalize_rut(json.loads(d)["rut"]) for _, d in records)


def test_every_malformed_kind_is_made() -> None:
    assert len(MALFORMED_KINDS) == len(set(MALFORMED_KINDS)) >= 10
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate_events(1, KNOWN, malformed_share=2)
