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


_LIKES: dict[str, re.Pattern] = {}


def _like(regex: str, x: str | None) -> bool | None:
    if x is None:
        return None
    compiled = _LIKES.get(regex)
    if compiled is None:
        compiled = _LIKES[regex] = re.compile(regex, re.DOTALL)
    return compiled.fullmatch(x) is not None


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
}
