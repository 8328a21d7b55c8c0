"""The SQL compiler: one table's Spark SQL, read with sqlglot, written out as Python
source that builds its `SqlTable` (`sql.table` runs that source and keeps it in the
compile cache, so sqlglot is imported only when a table's text is new).

The subset: `SELECT` of group keys, `window.start`/`window.end` (or `session_window.`),
aggregates (`operators.aggregates`) and named expressions over aggregates and keys;
`FROM <stream> WATERMARK timestamp DELAY OF INTERVAL n SECONDS`; `WHERE`; `GROUP BY
window(timestamp, size[, slide])` or `session_window(timestamp, gap)` and columns or
expressions of the event (or their SELECT names); `HAVING` over aggregates (or their
aliases). Expressions and functions are `sql.expressions` and `sql.scalars`. Anything
else is a `SqlError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import msgspec
from sqlglot import exp

from events.streams import Date, Timestamp
from operators.windows import Session, Sliding, Window
from sql.errors import SqlError, parse
from sql.expressions import Code, compile_code
from sql.scalars import Supported
from sql.table import EVENT_TIME, Column, columns_of

# Databricks' `WATERMARK col DELAY OF INTERVAL n SECONDS` (after FROM); sqlglot does not
# read it, so it is taken out first, blanked with spaces so lines and columns stay.
_WATERMARK = re.compile(
    r"\bWATERMARK\s+(?P<col>`?\w+`?)\s+DELAY\s+OF\s+INTERVAL\s+'?(?P<n>\d+)'?\s+"
    r"(?P<unit>SECONDS?|MINUTES?|HOURS?)\b",
    re.IGNORECASE,
)
# sqlglot reads `GROUP BY window(` as a WINDOW clause; quoted, it is the function.
_WINDOW_CALL = re.compile(r"(?<![`\w.])window(?=\s*\()", re.IGNORECASE)
_DURATION = re.compile(
    r"^\s*(\d+)\s*(millisecond|second|minute|hour|day)s?\s*$",
    re.IGNORECASE,
)
_UNIT_MS = {"millisecond": 1, "second": 1_000, "minute": 60_000, "hour": 3_600_000}
_UNIT_MS["day"] = 24 * _UNIT_MS["hour"]

# Column types by their Polars names (`storage.tables.DTYPES`).
_DTYPES: dict[type, str] = {
    int: "Int64",
    float: "Float64",
    str: "String",
    bool: "Boolean",
    # epoch ms in rows, written as a UTC timestamp (`Table.timestamps`)
    Timestamp: "Timestamp",
    # days since the epoch in rows, written as a date
    Date: "Date",
}
_PYTHON = {dtype: kind for kind, dtype in _DTYPES.items()}


def compile_source(
    text: str, name: str, streams: dict[str, type[msgspec.Struct]], shards: int
) -> str:
    """Python source of one expression that builds the `SqlTable` `name` defined by the
    SQL `text` (run by `sql.table.materialize`); `SqlError` for anything unsupported."""
    watermark = _WATERMARK.search(text)
    text = _WATERMARK.sub(lambda found: _blank(found.group()), text)
    text = _WINDOW_CALL.sub("`window`", text)
    statements = parse(text, "databricks")
    if len(statements) != 1:
        raise SqlError(None, f"one SELECT per file, found {len(statements)} statements")
    query = statements[0]
    if not isinstance(query, exp.Select):
        raise SqlError(query, f"only SELECT is supported, not {query.key.upper()}")
    return _Compiler(query, name, streams, watermark, shards).source()


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


class _Compiler:
    def __init__(
        self,
        query: exp.Select,
        name: str,
        streams: dict[str, type[msgspec.Struct]],
        watermark: re.Match | None,
        shards: int,
    ) -> None:
        self.query = query
        self.name = name
        self.shards = shards
        self.stream = self._stream(streams)
        self.columns = columns_of(streams[self.stream])
        self.delay_ms = self._delay(watermark)
        self.aggregates: list[str] = []  # the source of each aggregate
        self.aggregate_kinds: list[str] = []  # its class in `operators.aggregates`
        self.aggregate_codes: dict[str, int] = {}  # normalized SQL -> index
        self.aggregate_types: list[str] = []
        self.reads: set[str] = set()  # the event attributes the table reads

    # FROM, WATERMARK

    def _stream(self, streams: dict[str, type[msgspec.Struct]]) -> str:
        q = self.query
        for clause in ("with", "joins", "laterals", "order", "limit", "offset", "distinct"):
            node = q.args.get(clause)
            if node:
                first = node[0] if isinstance(node, list) else node
                word = {"with": "WITH", "joins": "JOIN", "laterals": "LATERAL VIEW"}.get(
                    clause, clause.upper()
                )
                raise SqlError(first, f"{word} is not supported")
        if q.args.get("windows") or q.find(exp.Window):
            raise SqlError(q.find(exp.Window), "OVER (window functions) is not supported")
        source = q.args.get("from") or q.args.get("from_")
        if source is None:
            raise SqlError(q, "FROM <stream> is missing")
        table = source.this
        if not isinstance(table, exp.Table) or table.args.get("db"):
            raise SqlError(table, "FROM takes one stream name, not a subquery")
        stream = table.name.lower()
        if stream not in streams:
            raise SqlError(
                table, f"unknown stream {table.name} (streams: {', '.join(sorted(streams))})"
            )
        return stream

    def _delay(self, watermark: re.Match | None) -> int:
        if watermark is None:
            raise SqlError(
                self.query,
                "no WATERMARK: windows would never close; add "
                f"`FROM {self.stream} WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS`",
            )
        column = watermark.group("col").strip("`").lower()
        if column != EVENT_TIME:
            raise SqlError(None, f"WATERMARK must be on {EVENT_TIME}, not {column}")
        unit = watermark.group("unit").lower().rstrip("s")
        return int(watermark.group("n")) * _UNIT_MS[unit]

    # GROUP BY

    def _group(self) -> tuple[Window, list[Key]]:
        """The window, and the group keys: columns or expressions of the event (`path` of
        `SELECT regexp_extract(...) AS path ... GROUP BY ..., path` too, as Spark's
        group-by aliases)."""
        group = self.query.args.get("group")
        if group is None:
            raise SqlError(self.query, "GROUP BY window(...) or session_window(...) is missing")
        named = {
            item.alias.lower(): item.this
            for item in self.query.expressions
            if isinstance(item, exp.Alias) and not item.this.find(exp.AggFunc)
        }
        window: Window | None = None
        keys: list[Key] = []
        for item in group.expressions:
            call = _window_call(item)
            if call is not None:
                if window is not None:
                    raise SqlError(item, "only one window() or session_window() per table")
                window = self._window(item, call)
                continue
            alias = ""
            if (
                isinstance(item, exp.Column)
                and not item.table
                and item.name.lower() not in self.columns
                and item.name.lower() in named
            ):
                alias = item.name.lower()
                item = named[alias]
            code = compile_code(item, self._event_scope)
            if code.type not in _DTYPES:
                raise SqlError(item, f"GROUP BY {item.sql('spark')} is always null")
            keys.append(Key(_normalized(item), code, isinstance(item, exp.Column), alias))
        if window is None:
            raise SqlError(group, "GROUP BY needs window(...) or session_window(...)")
        return window, keys

    def _window(self, node: exp.Expr, call: str) -> Window:
        args = node.expressions
        if not args or not (isinstance(args[0], exp.Column) and args[0].name.lower() == EVENT_TIME):
            raise SqlError(node, f"{call}() takes {EVENT_TIME} (the event time) first")
        durations = [self._duration(a) for a in args[1:]]
        try:
            if call == "session_window" and len(durations) == 1:
                return Session(durations[0])
            if call == "window" and len(durations) == 1:
                return Sliding(durations[0], durations[0])
            if call == "window" and len(durations) == 2:
                return Sliding(durations[0], durations[1])
        except ValueError as ex:
            raise SqlError(node, f"{node.sql('spark')}: {ex}") from None
        raise SqlError(
            node,
            f"{node.sql('spark')}: supported are window(timestamp, size[, slide]) and "
            "session_window(timestamp, gap)",
        )

    def _duration(self, node: exp.Expr) -> int:
        if isinstance(node, exp.Literal) and node.is_string:
            found = _DURATION.match(node.this)
            if found:
                return int(found.group(1)) * _UNIT_MS[found.group(2).lower()]
        raise SqlError(node, f"{node.sql('spark')} is not a duration like '60 seconds'")

    # columns and expressions

    def _column(self, node: exp.Column) -> Column:
        name = node.name.lower()
        found = self.columns.get(name)
        if found is None or node.table:
            raise SqlError(
                node,
                f"unknown column {node.sql('spark')} (columns of {self.stream}: "
                f"{', '.join(self.columns)})",
            )
        self.reads.add(found.name)
        return found

    def _event_scope(self, node: exp.Expr) -> Code | None:
        """Columns of the event `e`; aggregates are not allowed here."""
        if isinstance(node, exp.Column):
            c = self._column(node)
            return Code(f"e.{c.name}", c.type, c.nullable)
        if isinstance(node, exp.AggFunc):
            raise SqlError(node, f"{node.sql('spark')}: an aggregate belongs in SELECT or HAVING")
        return None

    def _where(self) -> str:
        where = self.query.args.get("where")
        if where is None:
            return "None"
        code = compile_code(where.this, self._event_scope)
        if code.type not in (bool, None):
            raise SqlError(where, "WHERE needs a condition")
        return f"lambda e: {code.text}"

    # aggregates

    def _aggregate(self, node: exp.AggFunc) -> int:
        """The index of the aggregate `node` computes (added when new)."""
        text = _normalized(node)
        if text in self.aggregate_codes:
            return self.aggregate_codes[text]
        if type(node) not in _AGGREGATE_NODES:
            names = ", ".join(row.spelling for row in AGGREGATES)
            raise SqlError(node, f"the aggregate {node.sql('spark')} is not supported ({names})")
        arg = node.this
        if isinstance(node, exp.Count):
            if isinstance(arg, exp.Distinct):
                if len(arg.expressions) != 1:
                    raise SqlError(node, "count(DISTINCT ...) of one column is supported")
                column, kind = self._argument(arg.expressions[0])
                agg, args = "CountDistinct", [column]
            elif arg is None or isinstance(arg, exp.Star) or _constant(arg):
                agg, args = "Count", ["None"]
            else:
                column, kind = self._argument(arg)
                agg, args = "Count", [column]
            dtype = "Int64"
        elif isinstance(node, exp.ApproxDistinct):
            column, kind = self._argument(arg)
            accuracy = node.args.get("accuracy")
            lg_k = 12
            if accuracy is not None:
                if not (isinstance(accuracy, exp.Literal) and not accuracy.is_string):
                    raise SqlError(node, "approx_count_distinct's rsd must be a number")
                lg_k = _lg_k_for(float(accuracy.this))
            agg, args, dtype = "ApproxCountDistinct", [column, repr(text), str(lg_k)], "Int64"
        elif isinstance(node, exp.CountIf):
            code = compile_code(arg, self._event_scope)
            if code.type not in (bool, None):
                raise SqlError(node, f"{node.sql('spark')}: count_if needs a condition")
            agg, args, dtype = "CountIf", [f"(lambda e: {code.text})"], "Int64"
        elif isinstance(node, exp.ApproxQuantile):
            column, kind = self._argument(arg)
            if kind not in (int, float):
                raise SqlError(node, f"{node.sql('spark')}: needs a number")
            p = _fraction(node.args.get("quantile"), node)
            accuracy = node.args.get("accuracy")  # exact here: any accuracy is met
            if accuracy is not None and not (
                isinstance(accuracy, exp.Literal) and accuracy.this.isdigit()
            ):
                raise SqlError(node, f"{node.sql('spark')}: the accuracy must be a whole number")
            agg, dtype = "Percentile", _DTYPES[kind]
            args = [column, repr(text), repr(p)]
        elif isinstance(node, exp.ArgMax | exp.ArgMin):
            value = compile_code(arg, self._event_scope)
            order = compile_code(node.expression, self._event_scope)
            if value.type is None or order.type is None:
                raise SqlError(node, f"{node.sql('spark')} is always null")
            if order.type not in (int, float, str, bool, Timestamp):
                raise SqlError(node, f"{node.sql('spark')}: orders by a {order.type.__name__}")
            agg = "MaxBy" if isinstance(node, exp.ArgMax) else "MinBy"
            dtype = _DTYPES[value.type]
            args = [f"(lambda e: ({order.text}, {value.text}))", repr(text)]
        elif type(node) in _VARIANCES:
            column, kind = self._argument(arg)
            if kind not in (int, float):
                raise SqlError(node, f"{node.sql('spark')}: needs a number")
            population, root = _VARIANCES[type(node)]
            agg, dtype = "Variance", "Float64"
            args = [column, repr(text), repr(population), repr(root)]
        elif type(node) in (exp.Sum, exp.Min, exp.Max, exp.Avg):
            column, kind = self._argument(arg)
            args = [column]
            if isinstance(node, exp.Min | exp.Max):
                agg = "Min" if isinstance(node, exp.Min) else "Max"
                dtype = _DTYPES.get(kind, "String")
            else:
                if kind not in (int, float):
                    raise SqlError(node, f"{node.sql('spark')}: needs a number")
                if isinstance(node, exp.Avg):
                    agg, dtype = "Avg", "Float64"
                else:
                    agg, dtype = "Sum", _DTYPES[kind]
        else:  # a row of AGGREGATES without a branch here: tests/sql/test_supported.py
            raise SqlError(node, f"the aggregate {node.sql('spark')} is not compiled yet")
        if len(args) == 1:
            args.append(repr(text))
        self.aggregate_codes[text] = len(self.aggregates)
        self.aggregates.append(f"{agg}({', '.join(args)})")
        self.aggregate_kinds.append(agg)
        self.aggregate_types.append(dtype)
        return len(self.aggregates) - 1

    def _argument(self, node: exp.Expr | None) -> tuple[str, type]:
        """The source of the function an aggregate reads from each event, and its type."""
        if node is None:
            raise SqlError(self.query, "an aggregate without its column")
        if isinstance(node, exp.Column):
            c = self._column(node)
            return f"attrgetter({c.name!r})", c.type
        code = compile_code(node, self._event_scope)
        if code.type is None:
            raise SqlError(node, f"{node.sql('spark')} is always null")
        return f"(lambda e: {code.text})", code.type

    # SELECT, HAVING

    def source(self) -> str:
        window, keys = self._group()
        self.window = window
        where = self._where()
        call = "session_window" if isinstance(window, Session) else "window"
        parts: list[str] = []  # Python source of each output column
        roles: list[str] = []  # what each is: a group `key`, `start`, `end` or a `value`
        names: list[str] = []
        dtypes: list[str] = []
        start = end = None
        aliases: dict[str, int] = {}
        for item in self.query.expressions:
            node, alias = (item.this, item.alias) if isinstance(item, exp.Alias) else (item, "")
            if _window_call(node) is not None or (
                isinstance(node, exp.Column)
                and not node.table
                and node.name.lower() in ("window", "session_window")
            ):
                raise SqlError(node, f"select {call}.start and {call}.end, not the window")
            if isinstance(node, exp.Column) and node.table:
                if node.table.lower() != call or node.name.lower() not in ("start", "end"):
                    raise SqlError(node, f"{node.sql('spark')}: select {call}.start and {call}.end")
                which = node.name.lower()
                parts.append("s" if which == "start" else "n")
                roles.append(which)
                dtypes.append("Int64")
                name = alias or which
                if which == "start":
                    start = name
                else:
                    end = name
            elif isinstance(node, exp.Column) or (
                not isinstance(node, exp.AggFunc) and _find_key(keys, node) is not None
            ):
                key = self._key(keys, node)
                parts.append(key.text)
                roles.append("key")
                dtypes.append(_DTYPES[key.type])  # type: ignore[index] # checked in _group
                name = alias or (node.name if isinstance(node, exp.Column) else "")
                if not name:
                    raise SqlError(node, f"SELECT {node.sql('spark')}: name it with AS")
            elif isinstance(node, exp.AggFunc):
                i = self._aggregate(node)
                parts.append(f"v[{i}]")
                roles.append("value")
                dtypes.append(self.aggregate_types[i])
                name = alias or _auto_name(node)
                aliases[name.lower()] = i
            else:  # an expression over aggregates and group columns: sum(bytes) / count(*)
                code = compile_code(node, partial(self._over_aggregates, keys))
                if code.type not in _DTYPES:
                    raise SqlError(node, f"SELECT {node.sql('spark')} is always null")
                if not alias:
                    raise SqlError(node, f"SELECT {node.sql('spark')}: name it with AS")
                parts.append(code.text)
                roles.append("value")
                dtypes.append(_DTYPES[code.type])
                name = alias
            if name in names:
                raise SqlError(item, f"two columns are named {name}")
            names.append(name)
        if start is None:
            raise SqlError(self.query, f"SELECT needs {call}.start: the table is partitioned by it")
        having = self._having(aliases)
        stamps = sorted(
            {n for n in (start, end) if n is not None}
            | {n for n, d in zip(names, dtypes, strict=True) if d == "Timestamp"}
        )
        dtypes = ["Int64" if d == "Timestamp" else d for d in dtypes]
        columns = list(zip(names, dtypes, strict=True))
        # the output's column names as written: `USERID` and `userid` are one column
        # to SQL but two to a Parquet schema
        definition = (
            f"{_normalized(self.query)} WATERMARK {self.delay_ms} ms, {self.shards} shards, "
            f"columns {', '.join(names)}"
        )
        fields = {
            "name": repr(self.name),
            "stream": repr(self.stream),
            "window": repr(window),
            "delay_ms": repr(self.delay_ms),
            "key": _key_source(keys),
            "where": where,
            "aggregates": f"[{', '.join(self.aggregates)}]",
            "having": having,
            "row": f"lambda k, s, n, v: ({', '.join(parts)},)",
            "table": (
                f"Table({self.name!r}, {columns!r}, partition_by={start!r}, "
                f"timestamps=frozenset({stamps!r}))"
            ),
            "definition": repr(definition),
            "roles": repr(tuple(roles)),
            "reads": f"frozenset({sorted(self.reads)!r})",
        }
        return "SqlTable(\n" + "".join(f"    {k}={v},\n" for k, v in fields.items()) + ")\n"

    def _key(self, keys: list[Key], node: exp.Expr) -> Code:
        """The group key `node` is, as the row sees it (`k`, or `k[i]` of several)."""
        i = _find_key(keys, node)
        if i is None:
            if isinstance(node, exp.Column):
                self._column(node)  # an unknown column says so first
            raise SqlError(node, f"{node.sql('spark')} is neither in GROUP BY nor aggregated")
        code = keys[i].code
        return Code("k" if len(keys) == 1 else f"k[{i}]", code.type, code.nullable)

    def _over_aggregates(self, keys: list[Key], node: exp.Expr) -> Code | None:
        """The scope of an expression in SELECT: aggregates (`v`) and group keys (`k`)."""
        if not isinstance(node, exp.AggFunc) and _find_key(keys, node) is not None:
            return self._key(keys, node)
        if isinstance(node, exp.AggFunc):
            return self._value(self._aggregate(node))
        if isinstance(node, exp.Column) and node.table:
            call = "session_window" if isinstance(self.window, Session) else "window"
            which = node.name.lower()
            if node.table.lower() != call or which not in ("start", "end"):
                raise SqlError(node, f"{node.sql('spark')}: {call}.start and {call}.end are")
            return Code("s" if which == "start" else "n", Timestamp, False)
        if isinstance(node, exp.Column):
            return self._key(keys, node)
        return None

    def _having(self, aliases: dict[str, int]) -> str:
        having = self.query.args.get("having")
        if having is None:
            return "None"

        def scope(node: exp.Expr) -> Code | None:
            if isinstance(node, exp.AggFunc):
                return self._value(self._aggregate(node))
            if isinstance(node, exp.Column) and not node.table:
                if node.name.lower() in aliases:
                    return self._value(aliases[node.name.lower()])
                raise SqlError(
                    node,
                    f"HAVING {node.sql('spark')}: HAVING is over aggregates; "
                    "a condition on a column belongs in WHERE",
                )
            return None

        code = compile_code(having.this, scope)
        if code.type not in (bool, None):
            raise SqlError(having, "HAVING needs a condition")
        return f"lambda v: {code.text}"

    def _value(self, i: int) -> Code:
        """Aggregate `i` of the values `v` HAVING sees; only counts are never null."""
        never_null = self.aggregate_kinds[i] in (
            "Count",
            "CountIf",
            "CountDistinct",
            "ApproxCountDistinct",
        )
        return Code(f"v[{i}]", _python_type(self.aggregate_types[i]), not never_null)


# The variances, as (population, square root): var_samp is sqlglot's Variance too.
_VARIANCES: dict[type, tuple[bool, bool]] = {
    exp.Variance: (False, False),
    exp.VariancePop: (True, False),
    exp.Stddev: (False, True),
    exp.StddevSamp: (False, True),
    exp.StddevPop: (True, True),
}


AGGREGATES: list[Supported] = [
    Supported(
        (exp.Count,), "`count(*)`, `count(1)`", "a count (the fast path: plain ints)", "int64"
    ),
    Supported((), "`count(col)`", "the non-null values counted", "int64"),
    Supported((exp.Sum,), "`sum(col)`", "the sum", "int64 for integers, float64 for doubles"),
    Supported((exp.Avg,), "`avg(col)`", "sum and count", "float64"),
    Supported((exp.Min, exp.Max), "`min(col)`, `max(col)`", "one value", "the column's own type"),
    Supported(
        (),
        "`count(DISTINCT col)`",
        "the set of distinct values: exact, and as big as the window's distinct values",
        "int64",
    ),
    Supported(
        (exp.ApproxDistinct,),
        "`approx_count_distinct(col[, rsd])`",
        "an HLL sketch (Apache DataSketches), see below",
        "int64",
    ),
    Supported(
        (exp.ApproxQuantile,),
        "`percentile_approx(col, p[, accuracy])`, `approx_percentile`",
        "each distinct value and its count: computed exactly (see below)",
        "the column's type",
    ),
    Supported(
        (exp.CountIf,),
        "`count_if(condition)`",
        "the events where the condition is true (not false, not null)",
        "int64",
    ),
    Supported(
        tuple(_VARIANCES),
        "`stddev(col)` (`stddev_samp`), `stddev_pop(col)`, `variance(col)` (`var_samp`), "
        "`var_pop(col)`",
        "count, mean and M2 of the non-null values, merged with Chan et al.'s formula as "
        "Spark's `CentralMomentAgg` does; the sample forms of one value are null, as in "
        "Spark 3+",
        "float64",
    ),
    Supported(
        (exp.ArgMax, exp.ArgMin),
        "`max_by(x, ord)`, `min_by(x, ord)`",
        "the chosen (ord, x); ties in `ord` give the greatest (least) `x` (see below)",
        "the type of `x`",
    ),
]
"""The aggregates the compiler takes (`_aggregate`), and docs/sql.md's table of them."""
_AGGREGATE_NODES = {node for row in AGGREGATES for node in row.nodes}


@dataclass(frozen=True)
class Key:
    """One group key: its SQL (normalized, to find it in SELECT), its code over the event
    `e`, and whether it is a plain column."""

    text: str
    code: Code
    column: bool
    alias: str = ""  # the SELECT name GROUP BY gave it by


def _find_key(keys: list[Key], node: exp.Expr) -> int | None:
    text = _normalized(node)
    named = node.name.lower() if isinstance(node, exp.Column) and not node.table else None
    return next(
        (i for i, k in enumerate(keys) if k.text == text or (named and k.alias == named)), None
    )


def _key_source(keys: list[Key]) -> str:
    """The key function: `attrgetter` for plain columns (as before expressions were
    allowed), else a lambda giving the one value or the tuple of them."""
    if not keys:
        return "no_key"
    if all(k.column for k in keys):
        return f"attrgetter{tuple(k.code.text.removeprefix('e.') for k in keys)!r}"
    if len(keys) == 1:
        return f"lambda e: {keys[0].code.text}"
    return f"lambda e: ({', '.join(k.code.text for k in keys)},)"


def _window_call(node: exp.Expr) -> str | None:
    """`window` or `session_window` when `node` calls one of them."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name in ("window", "session_window"):
            return name
    return None


def _constant(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal)


def _python_type(dtype: str) -> type:
    return _PYTHON.get(dtype, int)


def _fraction(node: exp.Expr | None, call: exp.Expr) -> float:
    """The percentage of `percentile_approx`: one number literal in [0, 1]."""
    if isinstance(node, exp.Array):
        raise SqlError(call, f"{call.sql('spark')}: one percentage; write one call for each")
    if not (isinstance(node, exp.Literal) and not node.is_string):
        raise SqlError(call, f"{call.sql('spark')}: the percentage must be a number")
    p = float(node.this)
    if not 0 <= p <= 1:
        raise SqlError(call, f"{call.sql('spark')}: the percentage must be between 0 and 1")
    return p


def _lg_k_for(rsd: float) -> int:
    """The smallest HLL size whose relative standard error (1.04 / sqrt(2^lg_k)) is at
    most `rsd`, as Spark's `approx_count_distinct(col, rsd)` promises."""
    if not 0 < rsd < 1:
        raise SqlError(None, f"approx_count_distinct's rsd {rsd} is not between 0 and 1")
    lg_k = 4
    while 1.04 / (2**lg_k) ** 0.5 > rsd and lg_k < 21:
        lg_k += 1
    return lg_k


def _auto_name(node: exp.Expr) -> str:
    """Spark's name for an unaliased aggregate: `count(1)`, `sum(bytes)`."""
    if isinstance(node, exp.Count) and (node.this is None or isinstance(node.this, exp.Star)):
        return "count(1)"
    return node.sql("spark").lower()


def _normalized(node: exp.Expr) -> str:
    """`node` as Spark SQL with column and stream names lower-cased and no comments: the same for
    every spelling of one query."""
    node = node.copy()
    for named in node.find_all(exp.Column, exp.Table):
        for ident in named.find_all(exp.Identifier):
            if not ident.quoted:
                ident.set("this", ident.this.lower())
    return node.sql("spark", comments=False)
