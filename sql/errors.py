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


def line_of(node: exp.Expr | None) -> int:
    """The line of the first token of `node` that knows where it was read."""
    if node is None:
        return 1
    for part in node.walk():
        meta = getattr(part, "_meta", None) or {}
        if "line" in meta:
            return int(meta["line"])
    return 1
