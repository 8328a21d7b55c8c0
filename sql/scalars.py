"""Spark's conditional, string and number functions, compiled to Python source like every
scalar expression (`sql.expressions`): CASE, IF, COALESCE, NULLIF; lower, upper, trim,
length, substr, concat, startswith, regexp_extract, RLIKE, split_part, split()[i]; abs,
floor, ceil, round, DIV; date_format, hour, minute, second and date_trunc of a timestamp
(the event time, `window.start`/`end`), in UTC as Spark's session time zone here.

Each is one entry of `FUNCTIONS`: a node type and the function that writes its source
from its compiled arguments. Nulls and types follow Spark without ANSI mode: a null
argument gives null (concat too), DIV by zero is null, substr counts from 1 and from the
end for a negative start, regexp_extract of no match is the empty string. The helpers
the source calls are in `sql.functions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from events.streams import Date, Timestamp
from sql.errors import SqlError
from sql.expressions import (
    NUMBERS,
    Code,
    Resolve,
    comparable,
    compile_code,
    name_of,
    null_when_none,
)
from sql.functions import MILLIS


def _null_safe(name: str, args: list[Code], kind: type | None, plain: str | None = None) -> Code:
    """`name(args)` through a helper that gives null for a null argument; `plain` (Python
    source over `{0}`, `{1}`...) when no argument can be null."""
    if plain is not None and not any(a.nullable for a in args):
        return Code(plain.format(*(a.text for a in args)), kind, False)
    return Code(f"{name}({', '.join(a.text for a in args)})", kind, True)


def _string(code: Code, node: exp.Expr) -> Code:
    if code.type not in (str, None):
        raise SqlError(node, f"{node.sql('spark')}: needs a string, not a {name_of(code.type)}")
    return code


def _number(code: Code, node: exp.Expr) -> Code:
    if code.type not in (*NUMBERS, None):
        raise SqlError(node, f"{node.sql('spark')}: needs a number, not a {name_of(code.type)}")
    return code


def _literal_string(node: exp.Expr | None, call: exp.Expr) -> str:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise SqlError(call, f"{call.sql('spark')}: the pattern must be a string literal")
    return node.this


# Java regex constructs that Python's `re` reads otherwise or not at all: refused rather
# than answered differently (docs/sql.md lists them)
_JAVA_ONLY = [
    (re.compile(r"(?<!\\)(?:\\\\)*[*+?}]\+"), "a possessive quantifier (*+, ++, ?+)"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[pP]"), "a \\p{...} character class"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[QE]"), "\\Q...\\E quoting"),
    (
        re.compile(r"(?<!\\)(?:\\\\)*\\[zZGRXhHvV]"),
        "an anchor or class Python's re reads otherwise",
    ),
    (re.compile(r"&&"), "a class intersection (&&)"),
    (re.compile(r"(?<!\\)(?:\\\\)*\[[^\]]*(?<!\\)\["), "a nested character class"),
]


def _pattern(text: str, call: exp.Expr) -> str:
    """A Java regular expression as Python's `re` reads it; refused when Python cannot,
    or would read it otherwise than Java does."""
    for construct, what in _JAVA_ONLY:
        if construct.search(text):
            raise SqlError(call, f"{call.sql('spark')}: {what} means something else to Python's re")
    try:
        re.compile(text)
    except re.error as ex:
        raise SqlError(call, f"{call.sql('spark')}: the pattern does not compile ({ex})") from None
    return text


def _common(codes: list[Code], node: exp.Expr) -> tuple[type | None, list[Code]]:
    """The one type of several branches (a double when ints and doubles mix, as Spark
    widens), with the ints made doubles; `SqlError` for other mixes."""
    kinds = {c.type for c in codes if c.type is not None}
    if not kinds:
        return None, codes
    if kinds <= set(NUMBERS):
        if len(kinds) == 1:
            return kinds.pop(), codes
        return float, [
            c if c.type is not int else Code(f"_to_float({c.text})", float, c.nullable)
            for c in codes
        ]
    if len(kinds) > 1:
        names = ", ".join(sorted(name_of(k) for k in kinds))
        raise SqlError(node, f"{node.sql('spark')} mixes {names}: CAST the branches to one type")
    return kinds.pop(), codes


def _taken(condition: Code) -> str:
    """Python source that is true only when the SQL condition is true (not null)."""
    return condition.text if not condition.nullable else f"({condition.text} is True)"


def _branches(whens: list[tuple[Code, Code]], default: Code | None, node: exp.Expr) -> Code:
    values = [v for _, v in whens] + ([default] if default is not None else [])
    kind, values = _common(values, node)
    text = values[-1].text if default is not None else "None"
    for (condition, _), value in reversed(list(zip(whens, values, strict=False))):
        text = f"({value.text} if {_taken(condition)} else {text})"
    nullable = default is None or any(v.nullable for v in values)
    return Code(text, kind, nullable)


def _case(node: exp.Case, resolve: Resolve) -> Code:
    subject = node.args.get("this")
    whens = []
    for branch in node.args.get("ifs") or []:
        test = compile_code(branch.this, resolve)
        if subject is not None:  # CASE x WHEN v: x = v
            x = compile_code(subject, resolve)
            comparable(x, test, node)
            test = Code(f"_arith(_op.eq, {x.text}, {test.text})", bool, True)
        elif test.type not in (bool, None):
            raise SqlError(branch, f"{branch.this.sql('spark')}: WHEN needs a condition")
        whens.append((test, compile_code(branch.args["true"], resolve)))
    default = node.args.get("default")
    return _branches(whens, None if default is None else compile_code(default, resolve), node)


def _if(node: exp.If, resolve: Resolve) -> Code:
    test = compile_code(node.this, resolve)
    if test.type not in (bool, None):
        raise SqlError(node, f"{node.this.sql('spark')}: IF needs a condition")
    otherwise = node.args.get("false")
    default = None if otherwise is None else compile_code(otherwise, resolve)
    return _branches([(test, compile_code(node.args["true"], resolve))], default, node)


def _coalesce(node: exp.Coalesce, resolve: Resolve) -> Code:
    args = [compile_code(a, resolve) for a in [node.this, *node.expressions]]
    kind, args = _common(args, node)
    return Code(
        f"_coalesce({', '.join(a.text for a in args)})", kind, all(a.nullable for a in args)
    )


def _nullif(node: exp.Nullif, resolve: Resolve) -> Code:
    a, b = compile_code(node.this, resolve), compile_code(node.expression, resolve)
    comparable(a, b, node)
    return Code(f"_nullif({a.text}, {b.text})", a.type, True)


def _unary(helper: str, plain: str, kind: type | None, check: Callable) -> Callable:
    """A function of one argument (`kind` None: of the argument's own type)."""

    def compile_unary(node: exp.Func, resolve: Resolve) -> Code:
        extra = [k for k, v in node.args.items() if k != "this" and v]
        if extra:  # trim(BOTH 'x' FROM s), floor(x, 2): other forms than Spark's plain one
            raise SqlError(node, f"{node.sql('spark')}: only the one-argument form is supported")
        arg = check(compile_code(node.this, resolve), node)
        out = kind if kind is not None else arg.type
        return _null_safe(helper, [arg], out, plain)

    return compile_unary


def _substr(node: exp.Substring, resolve: Resolve) -> Code:
    args = [_string(compile_code(node.this, resolve), node)]
    for part in ("start", "length"):
        given = node.args.get(part)
        if given is not None:
            code = compile_code(given, resolve)
            if code.type not in (int, None):
                raise SqlError(node, f"{node.sql('spark')}: the {part} must be an integer")
            args.append(code)
    return _null_safe("_substr", args, str)


def _concat(node: exp.Concat, resolve: Resolve) -> Code:
    args = []
    for a in node.expressions:
        code = compile_code(a, resolve)
        if code.type not in (str, None):  # Spark casts other types to strings here
            code = Code(f"_to_str({code.text})", str, code.nullable)
        args.append(code)
    plain = "(" + " + ".join(f"{{{i}}}" for i in range(len(args))) + ")"
    return _null_safe("_concat", args, str, plain)


def _starts_with(node: exp.StartsWith, resolve: Resolve) -> Code:
    a = _string(compile_code(node.this, resolve), node)
    b = _string(compile_code(node.expression, resolve), node)
    return _null_safe("_starts_with", [a, b], bool, "{0}.startswith({1})")


def _rlike(node: exp.RegexpLike, resolve: Resolve) -> Code:
    a = _string(compile_code(node.this, resolve), node)
    pattern = _pattern(_literal_string(node.expression, node), node)
    return _null_safe("_rlike", [Code(repr(pattern), str, False), a], bool)


def _regexp_extract(node: exp.RegexpExtract, resolve: Resolve) -> Code:
    a = _string(compile_code(node.this, resolve), node)
    pattern = _pattern(_literal_string(node.expression, node), node)
    group = node.args.get("group")
    index = 1
    if group is not None:
        if not (isinstance(group, exp.Literal) and not group.is_string):
            raise SqlError(node, f"{node.sql('spark')}: the group must be an integer literal")
        index = int(group.this)
    if not 0 <= index <= re.compile(pattern).groups:
        raise SqlError(node, f"{node.sql('spark')}: the pattern has no group {index}")
    args = [Code(repr(pattern), str, False), a, Code(str(index), int, False)]
    return _null_safe("_regexp_extract", args, str)


def _int_literal(node: exp.Expr | None, call: exp.Expr, what: str) -> int:
    """An integer literal argument (`-1` too)."""
    negative = isinstance(node, exp.Neg)
    inner = node.this if negative and node is not None else node
    if not (isinstance(inner, exp.Literal) and not inner.is_string and inner.this.isdigit()):
        raise SqlError(call, f"{call.sql('spark')}: {what} must be an integer literal")
    return -int(inner.this) if negative else int(inner.this)


def _round(node: exp.Round, resolve: Resolve) -> Code:
    x = _number(compile_code(node.this, resolve), node)
    given = node.args.get("decimals")
    digits = 0 if given is None else _int_literal(given, node, "the scale")
    return _null_safe("_round", [x, Code(str(digits), int, False)], x.type)


def _split_part(node: exp.SplitPart, resolve: Resolve) -> Code:
    x = _string(compile_code(node.this, resolve), node)
    delimiter = _literal_string(node.args.get("delimiter"), node)
    index = _int_literal(node.args.get("part_index"), node, "the part")
    if index == 0:
        raise SqlError(node, f"{node.sql('spark')}: parts count from 1 (or -1 from the end)")
    args = [x, Code(repr(delimiter), str, False), Code(str(index), int, False)]
    return _null_safe("_split_part", args, str)


def _element(node: exp.Bracket, resolve: Resolve) -> Code:
    """`split(s, regex)[i]` (from 0) and `element_at(split(s, regex), i)` (from 1, or from
    the end when negative); null out of range."""
    array = node.this
    if not isinstance(array, exp.RegexpSplit) or len(node.expressions) != 1:
        raise SqlError(
            node, f"{node.sql('spark')}: only an element of split(s, regex) is supported"
        )
    x = _string(compile_code(array.this, resolve), node)
    pattern = _pattern(_literal_string(array.expression, node), node)
    if re.compile(pattern).groups:  # Python's split returns the groups too, Java's not
        raise SqlError(node, f"{node.sql('spark')}: a pattern with groups; write (?:...)")
    if re.compile(pattern).match("") is not None:  # Java and Python split those apart
        raise SqlError(node, f"{node.sql('spark')}: a pattern that can match nothing")
    index = _int_literal(node.expressions[0], node, "the index")
    offset = int(node.args.get("offset") or 0)
    if offset and index == 0:
        raise SqlError(node, f"{node.sql('spark')}: element_at counts from 1")
    # element_at: from 1, and from the end when negative; [i]: from 0, and [-1] is null
    from_one = index - 1 if index > 0 else index
    at = from_one if offset else (index if index >= 0 else None)
    args = [Code(repr(pattern), str, False), x, Code(repr(at), int, False)]
    return _null_safe("_split_at", args, str)


def _int_div(node: exp.IntDiv, resolve: Resolve) -> Code:
    a, b = (compile_code(x, resolve) for x in (node.this, node.expression))
    for code in (a, b):
        if code.type not in (int, None):
            raise SqlError(node, f"{node.sql('spark')}: DIV takes integers")
    return Code(f"_int_div({a.text}, {b.text})", int, True)


def _timestamp(node: exp.Expr, resolve: Resolve, call: exp.Expr) -> Code:
    """A timestamp argument: the event time, `window.start`/`end`, min or max of one."""
    if isinstance(node, exp.TimeStrToTime):  # sqlglot's wrapper of date_format's argument
        node = node.this
    code = compile_code(node, resolve)
    if code.type not in (Timestamp, None):
        raise SqlError(call, f"{call.sql('spark')}: needs a timestamp, not a {name_of(code.type)}")
    return code


# Java's date pattern letters as sqlglot turns them into strftime (each `...strict`)
_STRFTIME = re.compile(r"%([YymdHMS])(?:strict)?")


def _date_format(node: exp.TimeToStr, resolve: Resolve) -> Code:
    x = _timestamp(node.this, resolve, node)
    given = node.args.get("format")
    if not (isinstance(given, exp.Literal) and given.is_string):
        raise SqlError(node, f"{node.sql('spark')}: the pattern must be a string literal")
    pattern = _STRFTIME.sub(r"%\1", given.this).replace("SSS", MILLIS)
    if re.search(r"%[^YymdHMS%]|[A-Za-z]", re.sub(r"%[YymdHMS]", "", pattern)):
        raise SqlError(
            node,
            f"{node.sql('spark')}: patterns of yyyy, yy, MM, dd, HH, mm, ss and SSS are supported",
        )
    return _null_safe("_date_format", [x, Code(repr(pattern), str, False)], str)


def _part(ms_per: int, modulo: int) -> Callable[[exp.Expr, Resolve], Code]:
    """hour(), minute(), second() of a timestamp, in UTC."""

    def compile_part(node: exp.Expr, resolve: Resolve) -> Code:
        x = _timestamp(node.this, resolve, node)
        return null_when_none(x, f"({x.text} // {ms_per} % {modulo})", int)

    return compile_part


_FIXED_UNITS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_CALENDAR_UNITS = ("WEEK", "MONTH", "QUARTER", "YEAR")


def _to_date(node: exp.TsOrDsToDate, resolve: Resolve) -> Code:
    x = _timestamp(node.this, resolve, node)
    return null_when_none(x, f"({x.text} // 86400000)", Date)


def _date_trunc(node: exp.TimestampTrunc, resolve: Resolve) -> Code:
    x = _timestamp(node.this, resolve, node)
    unit = node.args.get("unit")
    name = (unit.name if unit is not None else "").upper()
    if name in _FIXED_UNITS:
        return null_when_none(x, f"({x.text} - {x.text} % {_FIXED_UNITS[name]})", Timestamp)
    if name in _CALENDAR_UNITS:
        return Code(f"_trunc_calendar({x.text}, {name!r})", Timestamp, True)
    raise SqlError(
        node,
        f"{node.sql('spark')}: the unit is one of {', '.join([*_FIXED_UNITS, *_CALENDAR_UNITS])}",
    )


@dataclass(frozen=True)
class Supported:
    """One row of what the SQL understands: the sqlglot nodes it is, how it is written,
    its result type (aggregates) and what to know. The compiler takes only the nodes a
    row names (`FUNCTIONS` here, `sql.compiler.AGGREGATES`), and docs/sql.md's tables
    are printed from the rows (`python -m sql.supported`): the two cannot drift."""

    nodes: tuple[type, ...]
    spelling: str
    notes: str
    result: str = ""


SCALARS: list[Supported] = [
    Supported(
        (exp.Case, exp.If),
        "`CASE WHEN c THEN a [WHEN ...] [ELSE b] END`, `CASE x WHEN v THEN a ... END`, "
        "`IF(c, a, b)`",
        "a branch is taken only when its condition is true (not null); no `ELSE` is null; "
        "integer and double branches give a double; other mixes are refused (CAST one)",
    ),
    Supported(
        (exp.Coalesce, exp.Nullif),
        "`coalesce(a, b, ...)`, `nullif(a, b)`",
        "the first non-null; null when a = b",
    ),
    Supported(
        (exp.Lower, exp.Upper, exp.Trim, exp.Length),
        "`lower`, `upper`, `trim`, `length`",
        "`trim` takes spaces only, `length` counts characters; the one-argument forms",
    ),
    Supported(
        (exp.Substring,),
        "`substr(s, pos[, len])`, `substring`",
        "from 1; 0 is 1; a negative `pos` counts from the end",
    ),
    Supported(
        (exp.Concat,), "`concat(a, b, ...)`", "null if any argument is; numbers become strings"
    ),
    Supported(
        (exp.StartsWith, exp.RegexpLike, exp.RegexpExtract),
        "`startswith(s, prefix)`, `s RLIKE 'regex'`, `regexp_like`, "
        "`regexp_extract(s, 'regex'[, group])`",
        "the pattern is a string literal, read by Python's `re` (Java's syntax for the "
        "common cases, below); no match extracts `''`",
    ),
    Supported(
        (exp.SplitPart, exp.Bracket),
        "`split_part(s, 'delimiter', n)`, `split(s, 'regex')[i]`, "
        "`element_at(split(s, 'regex'), n)`",
        "`split_part` from 1 (or -1 from the end), `''` out of range; `[i]` from 0, null "
        "out of range; a split pattern has no groups and cannot match nothing",
    ),
    Supported(
        (exp.Abs, exp.Floor, exp.Ceil, exp.Round, exp.IntDiv),
        "`abs`, `floor`, `ceil`, `round(x[, d])`, `a DIV b`",
        "`floor` and `ceil` give integers; `round` is half up on the decimal a double is "
        "written as (`round(2.675, 2)` is 2.68); `DIV` of integers, toward zero, null for 0",
    ),
    Supported(
        (exp.TimeToStr,),
        "`date_format(ts, 'yyyy-MM-dd HH:mm:ss.SSS')`",
        "the pattern letters `yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`; others are refused",
    ),
    Supported(
        (exp.Hour, exp.Minute, exp.Second),
        "`hour(ts)`, `minute(ts)`, `second(ts)`",
        "integers, in UTC",
    ),
    Supported(
        (exp.TsOrDsToDate,),
        "`to_date(ts)`",
        "the UTC day, a date (written as a Parquet `DATE`); compared with a string "
        "literal, that day",
    ),
    Supported(
        (exp.TimestampTrunc,),
        "`date_trunc('HOUR', ts)`",
        "a timestamp; `SECOND`, `MINUTE`, `HOUR`, `DAY`, `WEEK` (from Monday), `MONTH`, "
        "`QUARTER`, `YEAR`",
    ),
]

_COMPILERS: dict[type, Callable[..., Code]] = {
    exp.Case: _case,
    exp.If: _if,
    exp.Coalesce: _coalesce,
    exp.Nullif: _nullif,
    exp.Lower: _unary("_lower", "{0}.lower()", str, _string),
    exp.Upper: _unary("_upper", "{0}.upper()", str, _string),
    exp.Trim: _unary("_trim", "{0}.strip(' ')", str, _string),
    exp.Length: _unary("_length", "len({0})", int, _string),
    exp.Substring: _substr,
    exp.Concat: _concat,
    exp.StartsWith: _starts_with,
    exp.RegexpLike: _rlike,
    exp.RegexpExtract: _regexp_extract,
    exp.Abs: _unary("_abs", "abs({0})", None, _number),
    exp.Floor: _unary("_floor", "_math.floor({0})", int, _number),
    exp.Ceil: _unary("_ceil", "_math.ceil({0})", int, _number),
    exp.IntDiv: _int_div,
    exp.Round: _round,
    exp.SplitPart: _split_part,
    exp.Bracket: _element,
    exp.TimeToStr: _date_format,
    exp.Hour: _part(3_600_000, 24),
    exp.Minute: _part(60_000, 60),
    exp.Second: _part(1_000, 60),
    exp.TimestampTrunc: _date_trunc,
    exp.TsOrDsToDate: _to_date,
}

# What `sql.expressions` calls for a function node: only the nodes a row names
FUNCTIONS: dict[type, Callable[..., Code]] = {
    node: _COMPILERS[node] for row in SCALARS for node in row.nodes
}
"""The functions this module compiles, by sqlglot's node type."""
