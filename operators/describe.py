"""A function as one line of text that says what it computes, not how it is spelt: an
aggregate over a Python function names it so (`operators.aggregates`), as the windows of
earlier versions named their `where` and `having` in the definitions their recovery
stores hold (`ownership.definition`); a new release must not change that text by
reformatting a lambda.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from operator import attrgetter, itemgetter
from types import CodeType


def describe(fn: Callable | None) -> str:
    """What a function computes, as one line of text that does not depend on how it is
    spelt: `attrgetter('userid')`, or a lambda's (or function's) syntax tree written
    back as code, with the constants it reads from its closure or module put in.

    `ownership.definition` compares these by meaning (argument names do not count),
    so reformatting a lambda or renaming its argument resumes a store, while a changed
    constant does not.
    """
    if fn is None:
        return "none"
    if isinstance(fn, attrgetter | itemgetter):
        return repr(fn).removeprefix("operator.")
    node = _syntax_of(fn)
    if node is None:
        return getattr(fn, "__qualname__", repr(fn))
    return " ".join(ast.unparse(_Constants(fn).visit(node)).split())


def _syntax_of(fn: Callable) -> ast.Lambda | ast.FunctionDef | None:
    """The syntax tree of a lambda or function, found in its module's source."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    try:
        lines, _ = inspect.findsource(code)
    except (OSError, TypeError):
        return None
    tree = ast.parse("".join(lines))
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Lambda | ast.FunctionDef)
        and code.co_firstlineno in {n.lineno, *(d.lineno for d in getattr(n, "decorator_list", []))}
        and (isinstance(n, ast.Lambda) or n.name == code.co_name)
    ]
    if len(found) > 1:  # several lambdas on one line: the one that compiles to `code`
        found = [n for n in found if _compiles_to(n, code)] or found[:1]
    return found[0] if found else None


def _compiles_to(node: ast.Lambda | ast.FunctionDef, code: CodeType) -> bool:
    statement = node if isinstance(node, ast.FunctionDef) else ast.Expr(node)
    module = ast.fix_missing_locations(ast.Module(body=[statement], type_ignores=[]))
    inner = [c for c in compile(module, "<describe>", "exec").co_consts if isinstance(c, CodeType)]
    # Compiled alone, the names it reads from a closure become globals.
    return bool(inner) and (inner[0].co_consts, set(inner[0].co_names)) == (
        code.co_consts,
        set(code.co_names) | set(code.co_freevars),
    )


class _Constants(ast.NodeTransformer):
    """Puts in the values of the plain constants (numbers, strings) a function reads from
    its closure or its module, so that changing one changes the description."""

    def __init__(self, fn: Callable) -> None:
        code = fn.__code__
        cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=False))
        self.values: dict[str, bool | int | float | str | bytes | None] = {}
        # co_names also holds attribute names (`c.status`): a global of that name must
        # not replace the function's own argument or local of the same name.
        for name in set(code.co_names + code.co_freevars) - set(code.co_varnames):
            if name in cells:
                try:
                    value = cells[name].cell_contents
                except ValueError:  # an empty cell
                    continue
            elif name in fn.__globals__:
                value = fn.__globals__[name]
            else:
                continue
            if isinstance(value, bool | int | float | str | bytes) or value is None:
                self.values[name] = value

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return ast.copy_location(ast.Constant(self.values[node.id]), node)
        return node
