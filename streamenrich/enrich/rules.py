"""The rules engine: declarative rules over an enriched event, checked before anything runs.

A rules file (``reference_data/rules.yaml``) holds a top-level ``rules:`` list; each rule has
exactly ``name`` (snake_case, unique), ``description``, ``severity`` (one of
:data:`SEVERITIES`) and ``when``, a boolean Spark SQL expression over the rule columns
(:data:`RULE_COLUMNS`): the event fields as named in the data contract and the reference
fields, the two names in both (``rut``, ``region``) prefixed ``person_`` on the reference side.

>>> rules = RuleSet.from_file("reference_data/rules.yaml")   # doctest: +SKIP
>>> scored = rules.apply(joined)          # adds "rules": the names of the rules that fired
... # doctest: +SKIP

:meth:`RuleSet.from_file` refuses a bad file with a :class:`RuleError` naming the rule and the
problem (see :mod:`streamenrich.enrich.expressions` for what an expression may contain);
:meth:`RuleSet.apply` also has Spark's analyzer confirm that every rule is boolean. Time
functions (``hour(event_time)``) use the session time zone, ``spark.sql.session.timeZone``:
set it to ``America/Santiago`` for Chilean local time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from streamenrich.enrich.events import EVENT_FIELDS
from streamenrich.enrich.expressions import ExpressionError, Kind, check_expression
from streamenrich.reference.contract import REGISTRY_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
RULE_KEYS: tuple[str, ...] = ("name", "description", "severity", "when")
RULE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Reference field -> its name in the rule namespace (and in the joined DataFrame).
PERSON_COLUMNS: dict[str, str] = {
    name: f"person_{name}" if name in EVENT_FIELDS else name
    for name in (part.split()[0] for part in REGISTRY_SCHEMA.split(","))
}
_KINDS = {"string": "string", "bigint": "number", "boolean": "boolean", "timestamp": "timestamp"}
_REGISTRY_TYPES = {part.split()[0]: part.split()[1].lower() for part in REGISTRY_SCHEMA.split(",")}
RULE_COLUMNS: dict[str, Kind] = {
    **{name: _KINDS[spark_type] for name, (_, spark_type) in EVENT_FIELDS.items()},
    **{PERSON_COLUMNS[name]: _KINDS[t] for name, t in _REGISTRY_TYPES.items()},
}


class RuleError(ValueError):
    """A rule (or the rules file) is invalid. ``rule`` names it; ``problem`` says why."""

    def __init__(self, source: str, rule: str | None, problem: str) -> None:
        where = f"{source}: rule '{rule}'" if rule else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.rule = rule
        self.problem = problem


@dataclass(frozen=True)
class Rule:
    """One checked rule; ``sql`` is the Spark SQL that runs (see ``check_expression``)."""

    name: str
    description: str
    severity: str
    when: str
    sql: str


def _check_rule(source: str, index: int, entry: Any) -> Rule:
    label = f"#{index + 1}"
    if not isinstance(entry, dict):
        raise RuleError(source, label, "a rule must be a mapping with keys " + ", ".join(RULE_KEYS))
    name = entry.get("name")
    if isinstance(name, str) and name:
        label = name
    missing = [key for key in RULE_KEYS if key not in entry]
    if missing:
        raise RuleError(source, label, f"missing key(s): {', '.join(missing)}")
    unknown = sorted(str(key) for key in entry if key not in RULE_KEYS)
    if unknown:
        raise RuleError(source, label, f"unknown key(s): {', '.join(unknown)}")
    if not isinstance(name, str) or not re.match(RULE_NAME_PATTERN, name):
        raise RuleError(source, label, f"name must match {RULE_NAME_PATTERN}, got {name!r}")
    description = entry["description"]
    if not isinstance(description, str) or not description.strip():
        raise RuleError(source, label, "description must be a non-empty string")
    severity = entry["severity"]
    if severity not in SEVERITIES:
        raise RuleError(
            source, label, f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    when = entry["when"]
    if not isinstance(when, str):
        raise RuleError(source, label, f"'when' must be a string, got {type(when).__name__}")
    try:
        sql = check_expression(when, RULE_COLUMNS)
    except ExpressionError as exc:
        raise RuleError(source, label, f"when: {exc}") from exc
    return Rule(name=name, description=description.strip(), severity=severity, when=when, sql=sql)


@dataclass(frozen=True)
class RuleSet:
    """Checked rules, in file order (which is also the order of names in ``rules``)."""

    rules: tuple[Rule, ...]
    source: str = "<rules>"

    @classmethod
    def from_file(cls, path: str | Path) -> RuleSet:
        """Load and check a rules file; raises :class:`RuleError` (or ``OSError``)."""
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<rules>") -> RuleSet:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RuleError(source, None, f"not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or "rules" not in document:
            raise RuleError(source, None, "expected a mapping with a top-level 'rules' key")
        extra = sorted(str(key) for key in document if key != "rules")
        if extra:
            raise RuleError(source, None, f"unknown top-level key(s): {', '.join(extra)}")
        return cls.from_entries(document["rules"], source=source)

    @classmethod
    def from_entries(cls, entries: Any, source: str = "<rules>") -> RuleSet:
        """Check a list of rule mappings (as found under ``rules:``)."""
        if not isinstance(entries, list) or not entries:
            raise RuleError(source, None, "'rules' must be a non-empty list")
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            rule = _check_rule(source, index, entry)
            if rule.name in seen:
                raise RuleError(source, rule.name, "duplicate rule name")
            seen.add(rule.name)
            rules.append(rule)
        return cls(rules=tuple(rules), source=source)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def confirm(self, frame: DataFrame) -> None:
        """Have Spark's analyzer resolve every rule on ``frame`` and confirm it is boolean.

        Analysis only (no job runs), so this works on streaming DataFrames.
        """
        from pyspark.errors import AnalysisException
        from pyspark.sql import functions as F
        from pyspark.sql.types import BooleanType

        for rule in self.rules:
            try:
                field = frame.select(F.expr(rule.sql).alias("fired")).schema["fired"]
            except AnalysisException as exc:
                raise RuleError(self.source, rule.name, f"Spark refused it: {exc}") from exc
            if not isinstance(field.dataType, BooleanType):
                problem = f"Spark types it as {field.dataType.simpleString()}, not boolean"
                raise RuleError(self.source, rule.name, problem)

    def apply(
        self, frame: DataFrame, column: str = "rules", where: Column | None = None
    ) -> DataFrame:
        """``frame`` with ``column``: the names of the rules that fired, in rule order.

        A rule whose value is null (a null field) does not fire. With ``where``, rules are
        evaluated only on the rows where it holds (``column`` is null elsewhere). ``frame``
        must have every rule column (:data:`RULE_COLUMNS`). Lazy: no Spark action.
        """
        from pyspark.sql import functions as F

        self.confirm(frame)
        fired = [F.when(F.expr(rule.sql), F.lit(rule.name)) for rule in self.rules]
        names = F.filter(F.array(*fired), lambda name: name.isNotNull())
        return frame.withColumn(column, names if where is None else F.when(where, names))
