"""A recovery store belongs to one dataflow definition.

Window state saved under one definition (window, key, watermark delay, filter,
having, the set of tables) means something else under another: resuming would mix
two definitions in one table. So the first run writes the definition next to the
store (`<recovery dir>/definition-<flow>.json`) and every resume compares: any
difference in meaning is refused with one line naming what changed.

Meaning, not spelling: a new release that reformats a lambda or renames its argument
must still resume every store. Definitions describe their functions as code
(`operators.describe`), and `meaning` writes every lambda in such a text in
one way (`ast.unparse`, arguments renamed by position) before the two are compared.
That also reads the texts earlier versions saved (`where where=lambda c: ...`).
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ownership.store import committed
from setting import ConfigError

# A lambda in a definition's text, with the `where=` an earlier version kept before it.
_LAMBDA = re.compile(r"(?:\b\w+=)?\blambda\b")


def meaning(text: str) -> str:
    """`text` with every lambda in it written one way: `lambda _0: _0 > 5` for
    `lambda errors: errors>5` or `where=lambda n: (n > 5)`. A lambda ends at a comma
    or at the end of the text, where the longest piece that parses as one ends."""
    out, pos = [], 0
    for found in _LAMBDA.finditer(text):
        if found.start() < pos:
            continue
        start = text.index("lambda", found.start())
        ends = [m.start() for m in re.finditer(",", text[start:])] + [len(text) - start]
        for end in sorted(ends, reverse=True):
            try:
                node = ast.parse(text[start : start + end].strip(), mode="eval").body
            except SyntaxError:
                continue
            if isinstance(node, ast.Lambda):
                out += [text[pos : found.start()], _positional(node)]
                pos = start + end
                break
    return "".join([*out, text[pos:]])


def _positional(node: ast.Lambda) -> str:
    """A lambda as code, its arguments renamed `_0`, `_1`, ... by position."""
    names = {a.arg: f"_{i}" for i, a in enumerate(node.args.args)}

    class Rename(ast.NodeTransformer):
        def visit_arg(self, arg: ast.arg) -> ast.arg:
            arg.arg = names.get(arg.arg, arg.arg)
            return arg

        def visit_Name(self, name: ast.Name) -> ast.Name:
            name.id = names.get(name.id, name.id)
            return name

    return ast.unparse(Rename().visit(node))


def changes(
    saved: dict[str, str], now: dict[str, str], earlier: Mapping[str, str] | None = None
) -> list[str]:
    """What differs in meaning between two definitions, one phrase per table. A table
    saved under its `earlier` spelling (the same meaning, written another way by an
    earlier version) is unchanged."""
    earlier = earlier or {}

    def same(t: str) -> bool:
        return meaning(saved[t]) in {meaning(now[t]), meaning(earlier.get(t, now[t]))}

    found = [f"table {t} was added" for t in sorted(now.keys() - saved.keys())]
    found += [f"table {t} was removed" for t in sorted(saved.keys() - now.keys())]
    found += [
        f"{t}: {saved[t]} -> {now[t]}" for t in sorted(saved.keys() & now.keys()) if not same(t)
    ]
    return found


def check_definition(
    recovery: Path, flow: str, definition: dict[str, str], earlier: Mapping[str, str] | None = None
) -> None:
    """Refuse (`ConfigError`) to resume a store written by another definition of `flow`;
    record the definition on a store that has nothing to resume yet."""
    path = recovery / f"definition-{flow}.json"
    if path.exists() and committed(recovery):
        saved = json.loads(path.read_text())
        differences = changes(saved, definition, earlier)
        if differences:
            raise ConfigError(
                f"dataflow {flow} changed since the recovery store {recovery} was written "
                f"({'; '.join(differences)}): resuming would mix two definitions in one "
                "table; to start fresh, move the recovery directory and the output away"
            )
        if saved == definition:
            return
        # The same meaning, spelt anew (a new release): the store is this spelling's now.
    # Nothing to resume yet, or a store written before definitions were recorded:
    # this definition is the store's from now on.
    hidden = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hidden.write_text(json.dumps(definition, indent=1, sort_keys=True))
    hidden.replace(path)
