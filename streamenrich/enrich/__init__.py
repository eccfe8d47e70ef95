"""Event parsing, the rules engine and the enrichment transform.

>>> from streamenrich.enrich import RuleSet, enrich
>>> rules = RuleSet.from_file("reference_data/rules.yaml")        # doctest: +SKIP
>>> out = enrich(events, registry, rules)                          # doctest: +SKIP
>>> out.matched, out.unmatched, out.unknown, out.dead_letter       # doctest: +SKIP
"""

from __future__ import annotations

from streamenrich.enrich.events import CHANNELS, EVENT_COLUMNS, EVENT_FIELDS, parse_events
from streamenrich.enrich.expressions import ExpressionError, check_expression
from streamenrich.enrich.rules import (
    PERSON_COLUMNS,
    RULE_COLUMNS,
    SEVERITIES,
    Rule,
    RuleError,
    RuleSet,
)
from streamenrich.enrich.transform import BUCKETS, Enriched, InputSchemaError, enrich

__all__ = [
    "BUCKETS",
    "CHANNELS",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "PERSON_COLUMNS",
    "RULE_COLUMNS",
    "SEVERITIES",
    "Enriched",
    "ExpressionError",
    "InputSchemaError",
    "Rule",
    "RuleError",
    "RuleSet",
    "check_expression",
    "enrich",
    "parse_events",
]
