"""The functions compiled SQL calls at run time: null in, null out, as Spark without ANSI
mode. Compiled expressions (`sql.expressions`) are Python source over these names; this
module needs no SQL parser, so a run whose tables come from the compile cache
(`sql.table`) never imports one.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any


def _arith(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return None if a is None or b is None else fn(a, b)


def _mod(a: Any, b: Any) -> Any:
    if b == 0:
        return None
    if isinstance(a, float) or isinstance(b, float):
        return math.fmod(a, b)
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _neg(a: Any) -> Any:
    return None if a is None else -a


def _div(a: Any, b: Any) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _between(x: Any, low: Any, high: Any) -> bool | None:
    return _and(_arith(operator.le, low, x), _arith(operator.le, x, high))


def _in(x: Any, values: tuple) -> bool | None:
    return None if x is None else x in values


@cache
def _regex(pattern: str, flags: int = 0) -> re.Pattern:
    """A pattern compiled once per process (LIKE's, RLIKE's, regexp_extract's, split's)."""
    return re.compile(pattern, flags)


def _like(regex: str, x: str | None) -> bool | None:
    return None if x is None else _regex(regex, re.DOTALL).fullmatch(x) is not None


def _to_int(x: Any) -> int | None:
    """Spark's CAST(x AS INT) outside ANSI mode: a number truncated, a string parsed
    (trimmed; '1.9' is 1), null when it does not parse."""
    if x is None or isinstance(x, int):
        return x
    if isinstance(x, float):
        return int(x)
    try:
        return int(x.strip())
    except ValueError:
        try:
            return int(float(x.strip()))
        except ValueError:
            return None


def _to_float(x: Any) -> float | None:
    if x is None:
        return None
    try:
        return float(x.strip() if isinstance(x, str) else x)
    except ValueError:
        return None


def _to_str(x: Any) -> str | None:
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def _coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


def _nullif(a: Any, b: Any) -> Any:
    return None if a is not None and b is not None and a == b else a


def _lower(x: str | None) -> str | None:
    return None if x is None else x.lower()


def _upper(x: str | None) -> str | None:
    return None if x is None else x.upper()


def _trim(x: str | None) -> str | None:
    return None if x is None else x.strip(" ")  # Spark trims spaces, not other whitespace


def _length(x: str | None) -> int | None:
    return None if x is None else len(x)


def _substr(x: str | None, pos: int | None, length: int | None = 2**31 - 1) -> str | None:
    """Spark's `substr`: 1-based, 0 is 1, a negative start counts from the end; the end is
    taken from the start before it is clamped (`substr('abc', -5, 3)` is 'a')."""
    if x is None or pos is None or length is None:
        return None
    n = len(x)
    start = pos - 1 if pos > 0 else (n + pos if pos < 0 else 0)
    end = n if length >= 2**31 - 1 else start + length
    start = max(start, 0)
    return "" if start >= end else x[start:end]


def _concat(*args: str | None) -> str | None:
    return None if any(a is None for a in args) else "".join(args)  # type: ignore[arg-type]


def _starts_with(x: str | None, prefix: str | None) -> bool | None:
    return None if x is None or prefix is None else x.startswith(prefix)


def _rlike(pattern: str, x: str | None) -> bool | None:
    """Java's `find`: the pattern anywhere in the string."""
    return None if x is None else _regex(pattern).search(x) is not None


def _regexp_extract(pattern: str, x: str | None, group: int) -> str | None:
    """The group of the first match; '' for no match or a group that took no part."""
    if x is None:
        return None
    found = _regex(pattern).search(x)
    return "" if found is None else (found.group(group) or "")


def _abs(x: Any) -> Any:
    return None if x is None else abs(x)


def _floor(x: Any) -> int | None:
    return None if x is None else math.floor(x)


def _ceil(x: Any) -> int | None:
    return None if x is None else math.ceil(x)


def _int_div(a: int | None, b: int | None) -> int | None:
    """Spark's `DIV`: toward zero; null for a zero divisor."""
    if a is None or b is None or b == 0:
        return None
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _round(x: Any, digits: int) -> Any:
    """Spark's `round`: half up, on the decimal a double is written as (2.675 -> 2.68,
    where Python's `round` gives 2.67)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return x
    exponent = Decimal(1).scaleb(-digits)
    rounded = Decimal(repr(x)).quantize(exponent, rounding=ROUND_HALF_UP)
    return float(rounded) if isinstance(x, float) else int(rounded)


def _split_part(x: str | None, delimiter: str, index: int) -> str | None:
    """Spark's `split_part`: parts from 1, or from -1 at the end; '' out of range; an
    empty delimiter does not split."""
    if x is None:
        return None
    parts = x.split(delimiter) if delimiter else [x]
    if index > 0:
        return parts[index - 1] if index <= len(parts) else ""
    return parts[index] if -index <= len(parts) else ""


def _split_at(pattern: str, x: str | None, at: int | None) -> str | None:
    """An element of Spark's `split(x, pattern)` (Java's split, trailing empties kept);
    null out of range."""
    if x is None or at is None:
        return None
    parts = _regex(pattern).split(x)
    return parts[at] if -len(parts) <= at < len(parts) else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLIS = "\ue000"
"""Where `_date_format`'s pattern has Java's `SSS` (milliseconds): strftime has none."""


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _date_format(ms: int | None, pattern: str) -> str | None:
    """Spark's `date_format` in UTC, `pattern` as strftime (the compiler converts Java's)."""
    if ms is None:
        return None
    text = _utc(ms).strftime(pattern)
    return text.replace(MILLIS, f"{ms % 1000:03d}") if MILLIS in pattern else text


def _trunc_calendar(ms: int | None, unit: str) -> int | None:
    """`date_trunc` to a week (from Monday), month, quarter or year, in UTC."""
    if ms is None:
        return None
    at = _utc(ms)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "WEEK":
        day -= timedelta(days=day.weekday())
    elif unit == "MONTH":
        day = day.replace(day=1)
    elif unit == "QUARTER":
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    else:
        day = day.replace(month=1, day=1)
    return (day - _EPOCH) // timedelta(milliseconds=1)


HELPERS: dict[str, Any] = {
    # the names compiled code reads, as `sql.expressions` writes them
    "_op": operator,
    "_arith": _arith,
    "_mod": _mod,
    "_neg": _neg,
    "_div": _div,
    "_and": _and,
    "_or": _or,
    "_not": _not,
    "_between": _between,
    "_in": _in,
    "_like": _like,
    "_to_int": _to_int,
    "_to_float": _to_float,
    "_to_str": _to_str,
    "_math": math,
    "_coalesce": _coalesce,
    "_nullif": _nullif,
    "_lower": _lower,
    "_upper": _upper,
    "_trim": _trim,
    "_length": _length,
    "_substr": _substr,
    "_concat": _concat,
    "_starts_with": _starts_with,
    "_rlike": _rlike,
    "_regexp_extract": _regexp_extract,
    "_date_format": _date_format,
    "_trunc_calendar": _trunc_calendar,
    "_abs": _abs,
    "_floor": _floor,
    "_ceil": _ceil,
    "_int_div": _int_div,
    "_round": _round,
    "_split_part": _split_part,
    "_split_at": _split_at,
}
