"""The one error of the SQL layer: what is not supported, and where in the file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp


class SqlError(Exception):
    """`message` about `node`; `line` is where the node starts in its file (1 if unknown)."""

    def __init__(self, node: exp.Expr | None, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line_of(node)


def parse(text: str, dialect: str) -> list[exp.Expr]:
    """sqlglot's statements of `text` in `dialect`; what it cannot read is one `SqlError`
    with the line, as sqlglot says it (sqlglot is imported here, by a file that is new)."""
    import sqlglot
    from sqlglot.errors import ParseError, SqlglotError

    try:
        return [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except ParseError as ex:
        error = ex.errors[0] if ex.errors else {}
        failure = SqlError(None, f"cannot parse: {error.get('description', ex)}")
        failure.line = int(error.get("line") or 1)
        raise failure from None
    except SqlglotError as ex:  # the tokenizer's: an unterminated string, a stray quote
        raise SqlError(None, f"cannot parse: {' '.join(str(ex).split())}") from None


def line_of(node: exp.Expr | None) -> int:
    """The line of the first token of `node` that knows where it was read."""
    if node is None:
        return 1
    for part in node.walk():
        meta = getattr(part, "_meta", None) or {}
        if "line" in meta:
            return int(meta["line"])
    return 1
