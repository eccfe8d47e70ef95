"""The rules engine: the shipped file, injection and invalid rules refused, safe evaluation."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from streamenrich.enrich import RULE_COLUMNS, Rule, RuleError, RuleSet
from tests.enrich.conftest import RULES_FILE


def rules_yaml(*rules: dict[str, Any]) -> str:
    return yaml.safe_dump({"rules": list(rules)}, allow_unicode=True)


def rule(name: str = "r", when: Any = "watchlist", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": "a rule", "severity": "high", "when": when, **extra}


def test_shipped_rules_load(shipped_rules: RuleSet) -> None:
    assert len(shipped_rules.rules) >= 4
    assert shipped_rules.names[:2] == ("near_credit_limit", "watchlisted_person")
    by_name = {r.name: r for r in shipped_rules.rules}
    assert by_name["near_credit_limit"].sql == "amount > TRY_MULTIPLY(credit_limit, 0.8)"
    assert RuleSet.from_file(str(RULES_FILE)) == shipped_rules


INJECTIONS = {
    "reflect": "reflect('java.lang.Runtime', 'getRuntime') IS NOT NULL",
    "java_method": "java_method('java.lang.System', 'exit', 0) = 0",
    "registered udf": "leak(merchant) = 'x'",
    "unknown function": "abs(amount) > 1",
    "scalar subquery": "amount > (SELECT max(id) FROM range(10))",
    "in subquery": "rut IN (SELECT rut FROM secrets)",
    "exists": "EXISTS (SELECT 1)",
    "second statement": "watchlist; DROP TABLE people",
    "lambda": "exists(array(1), x -> x > 0)",
    "cast": "cast(merchant AS INT) > 0",
    "parameter": "amount > :limit",
    "variable substitution": "amount > ${limit}",
    "table-qualified column": "people.watchlist",
    "other column": "partitionKey = 'x'",
    "struct access": "named_struct('a', 1).a = 1",
    "nondeterministic": "rand() < 0.5",
}


@pytest.mark.parametrize("attack", list(INJECTIONS))
def test_rule_injection_is_rejected(spark: Any, attack: str) -> None:
    spark.udf.register("leak", lambda value: value, "string")
    with pytest.raises(RuleError) as info:
        RuleSet.from_yaml(rules_yaml(rule("benign"), rule("attack", INJECTIONS[attack])))
    assert info.value.rule == "attack"
    assert "attack" in str(info.value)


def test_a_comment_cannot_smuggle_code() -> None:
    text = "amount > 1 -- */ OR reflect('java.lang.Runtime', 'getRuntime') IS NOT NULL"
    checked = RuleSet.from_yaml(rules_yaml(rule("c", text)))
    assert checked.rules[0].sql == "amount > 1"


ERRORS: dict[str, tuple[str, str]] = {
    "unknown column": (rules_yaml(rule(when="amout > 1")), "unknown column 'amout'"),
    "syntax error": (rules_yaml(rule(when="amount >")), "syntax error"),
    "unterminated string": (rules_yaml(rule(when="channel = 'atm")), "syntax error"),
    "not boolean": (rules_yaml(rule(when="amount * 2")), "must be boolean"),
    "string vs number": (rules_yaml(rule(when="merchant > 5")), "mixes number and string"),
    "duplicate name": (rules_yaml(rule("twice"), rule("twice")), "duplicate rule name"),
    "missing when": (rules_yaml({"name": "r", "description": "d", "severity": "low"}), "when"),
    "missing name": (
        rules_yaml({"description": "d", "severity": "low", "when": "watchlist"}),
        "rule '#1': missing key(s): name",
    ),
    "unknown key": (rules_yaml(rule(wehn="watchlist")), "unknown key(s): wehn"),
    "bad severity": (rules_yaml(rule(severity="urgent")), "severity must be one of"),
    "bad name": (rules_yaml(rule("Big Spender")), "name must match"),
    "when not a string": (rules_yaml(rule(when=True)), "'when' must be a string"),
    "empty when": (rules_yaml(rule(when="  ")), "empty"),
    "no rules": ("rules: []\n", "non-empty list"),
    "no rules key": ("checks: []\n", "top-level 'rules'"),
    "not yaml": ("rules: [\n", "not valid YAML"),
    "not a mapping": (rules_yaml("watchlist"), "must be a mapping"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("error", list(ERRORS))
def test_rule_errors_are_rejected(error: str) -> None:
    text, problem = ERRORS[error]
    with pytest.raises(RuleError) as info:
        RuleSet.from_yaml(text, source="test.yaml")
    assert problem in str(info.value)
    assert str(info.value).startswith("test.yaml")
    if error not in {"no rules", "no rules key", "not yaml"}:
        assert info.value.rule in {"r", "twice", "#1", "Big Spender"}


def _rows(spark: Any, *rows: dict[str, Any]) -> Any:
    """A DataFrame with every rule column; the columns not given are null."""
    types = {"string": "string", "number": "bigint", "boolean": "boolean"}
    types["timestamp"] = "timestamp"
    ddl = ", ".join(f"{name} {types[kind]}" for name, kind in RULE_COLUMNS.items())
    data = [tuple(row.get(name) for name in RULE_COLUMNS) for row in rows or ({},)]
    return spark.createDataFrame(data, ddl)


def test_arithmetic_cannot_fail_the_batch(spark: Any) -> None:
    rules = RuleSet.from_yaml(
        rules_yaml(
            rule("overflow", "amount * 2 > 0"),
            rule("zero_divisor", "amount / credit_limit > 1"),
            rule("zero_modulus", "amount % credit_limit = 0"),
            rule("negation", "-amount > 0"),
            rule("plain", "amount > credit_limit"),
        )
    )
    frame = _rows(
        spark,
        {"event_id": "max", "amount": 2**63 - 1, "credit_limit": 0},
        {"event_id": "min", "amount": -(2**63), "credit_limit": 0},
    )
    fired = {row["event_id"]: row["rules"] for row in rules.apply(frame).collect()}
    assert fired == {"max": ["plain"], "min": []}


def test_spark_confirms_the_type(spark: Any) -> None:
    unchecked = RuleSet(rules=(Rule("typed", "d", "low", "amount", sql="amount"),))
    with pytest.raises(RuleError, match="rule 'typed': Spark types it as bigint, not boolean"):
        unchecked.apply(_rows(spark))
    missing = RuleSet(rules=(Rule("gone", "d", "low", "x", sql="no_such_column"),))
    with pytest.raises(RuleError, match="rule 'gone': Spark refused it"):
        missing.apply(_rows(spark))
