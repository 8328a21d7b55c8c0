"""SQL scalar expressions (Spark's dialect, as sqlglot parses them) compiled to Python
source: what a table's `WHERE`, `HAVING` and aggregate arguments compute.

Each expression becomes Python source over one argument, made a function by one `eval`
(`sql.table`): a `WHERE` runs as fast as a hand-written lambda. The helpers it calls
are in `sql.functions`. Nulls follow SQL's three-valued logic: an
operand that can be null (a column typed `T | None`, a division) goes through a helper
that gives null for null; one that cannot is compiled to the plain Python operator.
A `WHERE` keeps an event only when it is true, never when it is null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlglot import exp

from events.streams import Date, Timestamp
from sql.errors import SqlError


@dataclass(frozen=True)
class Code:
    """Python source for one expression, the Python type of its value (None for a
    NULL literal) and whether it can be null."""

    text: str
    type: type | None
    nullable: bool


Resolve = Callable[[exp.Expr], Code | None]
"""Gives the code of a node the scope knows (a column, an aggregate), else None."""

NUMBERS = (int, float)


def compile_code(node: exp.Expr, resolve: Resolve) -> Code:
    """The Python source of `node`, or `SqlError` naming what is not supported."""
    known = resolve(node)
    if known is not None:
        return known
    if isinstance(node, exp.Paren):
        inner = compile_code(node.this, resolve)
        return Code(f"({inner.text})", inner.type, inner.nullable)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return Code(repr(node.this), str, False)
        number = float(node.this) if any(c in node.this for c in ".eE") else int(node.this)
        return Code(repr(number), type(number), False)
    if isinstance(node, exp.Null):
        return Code("None", None, True)
    if isinstance(node, exp.Boolean):
        return Code(repr(bool(node.this)), bool, False)
    if isinstance(node, exp.Neg):
        inner = _numeric(compile_code(node.this, resolve), node)
        return (
            _call("_neg", [inner], inner.type)
            if inner.nullable
            else Code(f"(-{inner.text})", inner.type, False)
        )
    if isinstance(node, exp.Div):
        a, b = (_numeric(compile_code(x, resolve), node) for x in (node.this, node.expression))
        return Code(f"_div({a.text}, {b.text})", float, True)  # Spark: always a double
    if isinstance(node, exp.Mod):  # null for % 0, and the sign of the dividend, as Spark
        a, b = (_numeric(compile_code(x, resolve), node) for x in (node.this, node.expression))
        kind = float if float in (a.type, b.type) else int
        return Code(f"_arith(_mod, {a.text}, {b.text})", kind, True)
    if type(node) in _ARITHMETIC:
        a, b = (_numeric(compile_code(x, resolve), node) for x in (node.this, node.expression))
        kind = float if float in (a.type, b.type) else int
        symbol, name = _ARITHMETIC[type(node)]
        if a.nullable or b.nullable:
            return Code(f"_arith({name}, {a.text}, {b.text})", kind, True)
        return Code(f"({a.text} {symbol} {b.text})", kind, False)
    if type(node) in _COMPARISONS:
        a, b = (compile_code(x, resolve) for x in (node.this, node.expression))
        a, b = _timestamp_literal(a, b, node.this), _timestamp_literal(b, a, node.expression)
        comparable(a, b, node)
        symbol, name = _COMPARISONS[type(node)]
        plain = f"({a.text} {symbol} {b.text})"
        if a.nullable and not b.nullable and _ATTRIBUTE.match(a.text):
            return null_when_none(a, plain)  # a column against a constant: the common WHERE
        if b.nullable and not a.nullable and _ATTRIBUTE.match(b.text):
            return null_when_none(b, plain)
        if a.nullable or b.nullable:
            return Code(f"_arith({name}, {a.text}, {b.text})", bool, True)
        return Code(plain, bool, False)
    if isinstance(node, exp.Like):
        return _compile_like(node, resolve)
    if isinstance(node, exp.In):
        return _compile_in(node, resolve)
    if isinstance(node, exp.Between):
        x, low, high = (compile_code(node.args[k], resolve) for k in ("this", "low", "high"))
        low = _timestamp_literal(low, x, node.args["low"])
        high = _timestamp_literal(high, x, node.args["high"])
        comparable(x, low, node)
        comparable(x, high, node)
        if x.nullable or low.nullable or high.nullable:
            return Code(f"_between({x.text}, {low.text}, {high.text})", bool, True)
        return Code(f"({low.text} <= {x.text} <= {high.text})", bool, False)
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise SqlError(node, "IS is supported only as IS NULL or IS NOT NULL")
        return Code(f"({compile_code(node.this, resolve).text} is None)", bool, False)
    if isinstance(node, exp.And | exp.Or):
        a, b = (_boolean(compile_code(x, resolve), node) for x in (node.this, node.expression))
        word = "and" if isinstance(node, exp.And) else "or"
        if a.nullable or b.nullable:
            return Code(f"_{word}({a.text}, {b.text})", bool, True)
        return Code(f"({a.text} {word} {b.text})", bool, False)
    if isinstance(node, exp.Not):
        a = _boolean(compile_code(node.this, resolve), node)
        return (
            Code(f"_not({a.text})", bool, True)
            if a.nullable
            else Code(f"(not {a.text})", bool, False)
        )
    if isinstance(node, exp.Cast):  # CAST parses as TryCast in Spark's dialect, a subclass
        return _cast(node, resolve)
    if isinstance(node, exp.Column):
        raise SqlError(node, f"unknown column {node.sql('spark')}")
    function = _scalar_functions().get(type(node))
    if function is not None:
        return function(node, resolve)
    if isinstance(node, exp.Func):
        raise SqlError(node, f"the function {node.sql('spark')} is not supported here")
    raise SqlError(node, f"{node.sql('spark')} is not supported")


_ARITHMETIC: dict[type, tuple[str, str]] = {
    exp.Add: ("+", "_op.add"),
    exp.Sub: ("-", "_op.sub"),
    exp.Mul: ("*", "_op.mul"),
}
_COMPARISONS: dict[type, tuple[str, str]] = {
    exp.EQ: ("==", "_op.eq"),
    exp.NEQ: ("!=", "_op.ne"),
    exp.GT: (">", "_op.gt"),
    exp.GTE: (">=", "_op.ge"),
    exp.LT: ("<", "_op.lt"),
    exp.LTE: ("<=", "_op.le"),
}


# An event's column: cheap enough to read twice, so a null test can go inline
_ATTRIBUTE = re.compile(r"^e\.[A-Za-z_][A-Za-z0-9_]*$")


def null_when_none(column: Code, plain: str, kind: type | None = bool) -> Code:
    """`plain`, an expression over `column` of type `kind`, null when the column is:
    inline Python, with no helper call per event (as fast as `plain` on a column that
    cannot be null)."""
    if not column.nullable:
        return Code(plain, kind, False)
    return Code(f"(None if {column.text} is None else {plain})", kind, True)


def _call(name: str, args: list[Code], kind: type | None) -> Code:
    return Code(f"{name}({', '.join(a.text for a in args)})", kind, True)


def _numeric(code: Code, node: exp.Expr) -> Code:
    if code.type is not None and code.type not in NUMBERS:
        raise SqlError(node, f"{node.sql('spark')}: arithmetic on a {name_of(code.type)}")
    return code


def _boolean(code: Code, node: exp.Expr) -> Code:
    if code.type not in (bool, None):
        raise SqlError(node, f"{node.sql('spark')}: a {name_of(code.type)} is not a condition")
    return code


def comparable(a: Code, b: Code, node: exp.Expr) -> None:
    if a.type is None or b.type is None:
        return
    if (a.type in NUMBERS and b.type in NUMBERS) or a.type is b.type:
        return
    raise SqlError(
        node, f"{node.sql('spark')} compares a {name_of(a.type)} with a {name_of(b.type)}: CAST one"
    )


def _timestamp_literal(code: Code, other: Code, node: exp.Expr) -> Code:
    """A string literal compared with a timestamp is that instant, as Spark casts it:
    `timestamp >= '2026-12-01 08:00:00'` (UTC, Spark's session time zone here); compared
    with a date, that day (`to_date(timestamp) = '2026-12-01'`)."""
    if other.type not in (Timestamp, Date) or not (
        isinstance(node, exp.Literal) and node.is_string
    ):
        return code
    if other.type is Date:
        try:
            day = date.fromisoformat(node.this.strip()[:10])
        except ValueError:
            raise SqlError(node, f"{node.sql('spark')} is not a date") from None
        return Code(repr((day - date(1970, 1, 1)).days), Date, False)
    text = node.this.strip()
    try:
        at = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise SqlError(node, f"{node.sql('spark')} is not a timestamp") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return Code(repr(round(at.timestamp() * 1000)), Timestamp, False)


def name_of(kind: type | None) -> str:
    names = {
        int: "number",
        float: "number",
        str: "string",
        bool: "boolean",
        Timestamp: "timestamp",
        Date: "date",
    }
    return names.get(kind, "null") if kind is not None else "null"


def _compile_like(node: exp.Like, resolve: Resolve) -> Code:
    x = compile_code(node.this, resolve)
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string) or x.type not in (str, None):
        raise SqlError(node, "LIKE is supported as `string_column LIKE 'pattern'`")
    text = pattern.this
    inner = text.strip("%")
    inline = not x.nullable or _ATTRIBUTE.match(x.text)
    if "_" not in text and "\\" not in text and "%" not in inner and inline:
        # the forms the notebook uses, as fast as plain Python
        if text.startswith("%") and text.endswith("%") and len(text) > 1:
            test = f"({inner!r} in {x.text})"
        elif text.endswith("%"):
            test = f"{x.text}.startswith({inner!r})"
        elif text.startswith("%"):
            test = f"{x.text}.endswith({inner!r})"
        else:
            test = f"({x.text} == {inner!r})"
        if x.nullable:
            test = null_when_none(x, test).text
    else:
        regex = _like_regex(text)
        test = f"_like({regex!r}, {x.text})"
    code = Code(test, bool, x.nullable)
    if node.args.get("negate"):
        return (
            Code(f"_not({code.text})", bool, True)
            if code.nullable
            else Code(f"(not {code.text})", bool, False)
        )
    return code


def _like_regex(pattern: str) -> str:
    """SQL LIKE as a Python regex: `%` any run, `_` one character, `\\` escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return "".join(out)


def _compile_in(node: exp.In, resolve: Resolve) -> Code:
    x = compile_code(node.this, resolve)
    if node.args.get("query") or not node.expressions:
        raise SqlError(node, "IN is supported with a list of values, not a subquery")
    items = [compile_code(i, resolve) for i in node.expressions]
    for item in items:
        if item.nullable:
            raise SqlError(node, "IN with a NULL among its values is always null or true")
        comparable(x, item, node)
    values = f"({', '.join(i.text for i in items)},)"
    test = (
        Code(f"_in({x.text}, {values})", bool, True)
        if x.nullable
        else Code(f"({x.text} in {values})", bool, False)
    )
    return test


_INTEGERS = {"INT", "BIGINT", "SMALLINT", "TINYINT"}
_FLOATS = {"DOUBLE", "FLOAT", "DECIMAL"}


def _cast(node: exp.Cast, resolve: Resolve) -> Code:
    x = compile_code(node.this, resolve)
    to = node.to.this.name
    if to in _INTEGERS:
        return Code(f"_to_int({x.text})", int, True)
    if to in _FLOATS:
        return Code(f"_to_float({x.text})", float, True)
    if to in ("TEXT", "VARCHAR", "CHAR"):  # STRING parses as TEXT
        return Code(f"_to_str({x.text})", str, x.nullable)
    raise SqlError(node, f"CAST to {node.to.sql('spark')} is not supported")


def _scalar_functions() -> dict[type, Callable[..., Code]]:
    """CASE, string and number functions (`sql.scalars`, which builds on this module)."""
    from sql.scalars import FUNCTIONS

    return FUNCTIONS
