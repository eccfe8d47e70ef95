"""Checking a rule's ``when`` expression before Spark ever sees it.

The text is parsed with sqlglot (dialect ``spark``) and every node of the tree must be on an
allow-list: columns of the rule namespace, literals, boolean logic, comparisons, ``IN``,
``BETWEEN``, ``LIKE``, ``CASE``/``IF``, arithmetic, and a short list of total built-in
functions (see :data:`FUNCTIONS`). Anything else is refused: other functions (``reflect``,
``java_method``, UDFs, unknown names), subqueries, lambdas, parameters, casts, qualified or
unknown columns, several statements. A small type checker then requires comparable operands
and a boolean result.

The rule's guarantee is that it cannot fail at run time on any value (Spark 4 runs in ANSI
mode, where an overflow or a division by zero fails the whole batch): arithmetic is rewritten
to ``try_add``/``try_subtract``/``try_multiply``/``try_divide``/``try_mod``, which give null
(the rule does not fire) instead; casts, which throw on bad strings, are not allowed; and so
a string is never compared with a number or a timestamp (ANSI would cast it and could throw).

What runs in Spark is the SQL sqlglot generates from the checked tree, not the original text,
so Spark and the checker can never read the same text differently.

>>> check_expression("amount > credit_limit * 0.8", {"amount": "number", "credit_limit": "number"})
'amount > TRY_MULTIPLY(credit_limit, 0.8)'
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

# The value kinds the checker knows; "null" is the NULL literal, compatible with every kind.
Kind = str
NUMBER, STRING, BOOLEAN, TIMESTAMP, NULL = "number", "string", "boolean", "timestamp", "null"


class ExpressionError(ValueError):
    """A ``when`` expression that may not run; the message says what is wrong."""


_DATE_PARTS: tuple[type[exp.Func], ...] = (exp.Hour, exp.Minute, exp.Second, exp.Year)
_DATE_PARTS += (exp.Quarter, exp.Month, exp.Day, exp.DayOfMonth, exp.DayOfWeek, exp.DayOfYear)
# Built-in functions a rule may call, as their Spark names; each is total (never throws).
FUNCTIONS: tuple[str, ...] = (
    "hour", "minute", "second", "year", "quarter", "month", "day", "dayofmonth", "dayofweek",
    "dayofyear", "lower", "upper", "trim", "ltrim", "rtrim", "length", "substring", "left",
    "right", "concat", "startswith", "endswith", "contains", "coalesce", "least", "greatest",
    "if", "try_add", "try_subtract", "try_multiply", "try_divide", "try_mod",
)  # fmt: skip
# Functions sqlglot does not model get an Anonymous node; these few names are allowed there.
_ANONYMOUS = {"try_mod": NUMBER}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ARITHMETIC: tuple[type[exp.Expression], ...] = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_ARITHMETIC += (exp.SafeAdd, exp.SafeSubtract, exp.SafeMultiply, exp.SafeDivide)
_STRING_TESTS = (exp.StartsWith, exp.EndsWith, exp.Contains, exp.Like, exp.ILike)
_SAME_KIND = (exp.Coalesce, exp.Least, exp.Greatest)
_REFUSED: dict[type[exp.Expression], str] = {
    exp.Subquery: "subqueries are not allowed",
    exp.Select: "subqueries are not allowed",
    exp.Exists: "subqueries are not allowed",
    exp.Cast: "casts are not allowed (they throw on bad values in ANSI mode)",
    exp.TryCast: "casts are not allowed (they throw on bad values in ANSI mode)",
    exp.Lambda: "lambda functions are not allowed",
    exp.Placeholder: "parameters are not allowed",
    exp.Parameter: "parameters are not allowed",
    exp.Star: "'*' is not allowed",
    exp.Window: "window functions are not allowed",
    exp.IntDiv: "'div' is not allowed (it fails on a zero divisor); use try_divide",
}


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key


def _unify(node: exp.Expression, kinds: list[Kind]) -> Kind:
    known = {kind for kind in kinds if kind != NULL}
    if len(known) > 1:
        found = " and ".join(sorted(known))
        raise ExpressionError(f"'{node.sql(dialect='spark')}' mixes {found} values")
    return known.pop() if known else NULL


def _expect(node: exp.Expression, kind: Kind, wanted: Kind) -> None:
    if kind not in (wanted, NULL):
        raise ExpressionError(f"'{node.sql(dialect='spark')}' is {kind}, expected {wanted}")


class _Typer:
    """Infers each node's kind; raises :class:`ExpressionError` at the first refused node."""

    def __init__(self, columns: Mapping[str, Kind]) -> None:
        self.columns = columns
        self.visited: set[int] = set()

    def check(self, tree: exp.Expression) -> Kind:
        kind = self.kind(tree)
        # Defence in depth: a node the checker did not type (in an argument it does not know)
        # is refused rather than passed to Spark unchecked.
        for node in tree.walk():
            if id(node) not in self.visited and not isinstance(node, exp.Identifier):
                raise ExpressionError(f"'{node.sql(dialect='spark')}' is not allowed here")
        return kind

    def kind(self, node: exp.Expression | None) -> Kind:
        if node is None:
            raise ExpressionError("incomplete expression")
        self.visited.add(id(node))
        for refused, problem in _REFUSED.items():
            if isinstance(node, refused):
                raise ExpressionError(problem)
        return self._dispatch(node)

    def _all(self, args: list[exp.Expression], wanted: Kind, result: Kind | None = None) -> Kind:
        for arg in args:
            _expect(arg, self.kind(arg), wanted)
        return wanted if result is None else result

    def _optional(self, node: exp.Expression, arg: str, wanted: Kind) -> None:
        value = node.args.get(arg)
        if isinstance(value, exp.Expression):
            _expect(value, self.kind(value), wanted)

    def _compare(self, node: exp.Expression, args: list[exp.Expression]) -> Kind:
        _unify(node, [self.kind(arg) for arg in args])
        return BOOLEAN

    def _dispatch(self, node: exp.Expression) -> Kind:
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Literal):
            return STRING if node.is_string else NUMBER
        if isinstance(node, exp.Boolean):
            return BOOLEAN
        if isinstance(node, exp.Null):
            return NULL
        if isinstance(node, exp.Paren):
            return self.kind(node.this)
        if isinstance(node, exp.And | exp.Or):
            return self._all([node.this, node.expression], BOOLEAN)
        if isinstance(node, exp.Not):
            return self._all([node.this], BOOLEAN)
        if isinstance(node, _COMPARISONS):
            return self._compare(node, [node.this, node.expression])
        if isinstance(node, exp.Is):
            return self._is(node)
        if isinstance(node, exp.In):
            if any(node.args.get(k) for k in ("query", "unnest", "field")):
                raise ExpressionError("IN takes a list of values; subqueries are not allowed")
            return self._compare(node, [node.this, *node.expressions])
        if isinstance(node, exp.Between):
            return self._compare(node, [node.this, node.args["low"], node.args["high"]])
        if isinstance(node, _STRING_TESTS):
            return self._all([node.this, node.expression], STRING, BOOLEAN)
        if isinstance(node, _ARITHMETIC):
            return self._all([node.this, node.expression], NUMBER)
        if isinstance(node, exp.Neg):
            return self._all([node.this], NUMBER)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.If):
            _expect(node.this, self.kind(node.this), BOOLEAN)
            return _unify(node, [self.kind(node.args.get("true")), self._else(node, "false")])
        if isinstance(node, _SAME_KIND):
            return _unify(node, [self.kind(arg) for arg in [node.this, *node.expressions]])
        if isinstance(node, _DATE_PARTS):
            return self._all([node.this], TIMESTAMP, NUMBER)
        if isinstance(node, exp.TsOrDsToDate):
            return self._all([node.this], TIMESTAMP)
        if isinstance(node, exp.Trim | exp.Lower | exp.Upper):
            self._optional(node, "expression", STRING)
            return self._all([node.this], STRING)
        if isinstance(node, exp.Length):
            return self._all([node.this], STRING, NUMBER)
        if isinstance(node, exp.Substring | exp.Left | exp.Right):
            for arg in ("start", "length", "expression"):
                self._optional(node, arg, NUMBER)
            return self._all([node.this], STRING)
        if isinstance(node, exp.Concat):
            return self._all(list(node.expressions), STRING)
        if isinstance(node, exp.Anonymous) and _function_name(node) in _ANONYMOUS:
            return self._all(list(node.expressions), NUMBER, _ANONYMOUS[_function_name(node)])
        if isinstance(node, exp.Func):
            allowed = ", ".join(FUNCTIONS)
            raise ExpressionError(
                f"function '{_function_name(node)}' is not allowed; allowed: {allowed}"
            )
        raise ExpressionError(f"'{node.sql(dialect='spark')}' ({node.key}) is not allowed")

    def _column(self, node: exp.Column) -> Kind:
        if node.table or not isinstance(node.this, exp.Identifier):
            raise ExpressionError(f"'{node.sql(dialect='spark')}' is not a plain column name")
        if node.name not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise ExpressionError(f"unknown column '{node.name}'; known columns: {known}")
        return self.columns[node.name]

    def _is(self, node: exp.Is) -> Kind:
        target = node.expression
        self.visited.add(id(target))
        if isinstance(target, exp.Boolean):
            _expect(node.this, self.kind(node.this), BOOLEAN)
        elif isinstance(target, exp.Null):
            self.kind(node.this)
        else:
            raise ExpressionError("IS takes NULL, TRUE or FALSE")
        return BOOLEAN

    def _else(self, node: exp.Expression, arg: str) -> Kind:
        value = node.args.get(arg)
        return self.kind(value) if isinstance(value, exp.Expression) else NULL

    def _case(self, node: exp.Case) -> Kind:
        results = []
        for branch in node.args.get("ifs") or []:
            self.visited.add(id(branch))
            if node.this is not None:
                self._compare(branch, [node.this, branch.this])
            else:
                _expect(branch.this, self.kind(branch.this), BOOLEAN)
            results.append(self.kind(branch.args.get("true")))
        results.append(self._else(node, "default"))
        return _unify(node, results)


def _make_total(node: exp.Expression) -> exp.Expression:
    """Arithmetic as the ``try_*`` functions: null instead of an ANSI overflow error."""
    if isinstance(node, exp.Add):
        return exp.SafeAdd(this=node.this, expression=node.expression)
    if isinstance(node, exp.Sub):
        return exp.SafeSubtract(this=node.this, expression=node.expression)
    if isinstance(node, exp.Mul):
        return exp.SafeMultiply(this=node.this, expression=node.expression)
    if isinstance(node, exp.Div):
        return exp.SafeDivide(this=node.this, expression=node.expression)
    if isinstance(node, exp.Mod):
        return exp.Anonymous(this="TRY_MOD", expressions=[node.this, node.expression])
    if isinstance(node, exp.Neg) and not isinstance(node.this, exp.Literal):
        return exp.SafeSubtract(this=exp.Literal.number(0), expression=node.this)
    return node


def check_expression(text: str, columns: Mapping[str, Kind]) -> str:
    """Check a ``when`` expression; return the Spark SQL to run, or raise ExpressionError.

    ``columns`` maps each column a rule may use to its kind (``number``, ``string``,
    ``boolean``, ``timestamp``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    try:
        trees = sqlglot.parse(text, dialect="spark")
    except ParseError as exc:
        detail = exc.errors[0]["description"] if exc.errors else str(exc)
        raise ExpressionError(f"syntax error: {detail}") from exc
    except SqlglotError as exc:  # the tokenizer's errors, e.g. an unterminated string
        raise ExpressionError(f"syntax error: {exc}") from exc
    if len(trees) != 1 or trees[0] is None:
        raise ExpressionError("exactly one expression is expected (no ';')")
    tree = trees[0]
    if isinstance(tree, exp.Block | exp.Command) or not isinstance(tree, exp.Expression):
        raise ExpressionError("exactly one expression is expected, not a statement")
    kind = _Typer(columns).check(tree)
    if kind != BOOLEAN:
        raise ExpressionError(f"the expression must be boolean, but it is {kind}")
    # Comments are dropped: a comment regenerated as /* ... */ could end early and become code.
    tree = tree.copy()
    for node in list(tree.find_all(*_ARITHMETIC[:5], exp.Neg)):
        node.replace(_make_total(node))
    return tree.sql(dialect="spark", comments=False)
