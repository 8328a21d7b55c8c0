"""docs/sql.md's tables of aggregates and functions, printed from the rows the compiler
takes them by (`sql.compiler.AGGREGATES`, `sql.scalars.SCALARS`), so the docs and the
compiler cannot drift (tests/sql/test_supported.py compares).

    python -m sql.supported
"""

from __future__ import annotations

from sql.compiler import AGGREGATES
from sql.scalars import SCALARS

AGGREGATES_MARK = "<!-- aggregates: python -m sql.supported -->"
FUNCTIONS_MARK = "<!-- functions: python -m sql.supported -->"
END_MARK = "<!-- end of generated table -->"


def aggregates_table() -> str:
    rows = [f"| {a.spelling} | {a.result} | {a.notes} |" for a in AGGREGATES]
    return "\n".join(["| aggregate | type | state |", "|---|---|---|", *rows])


def functions_table() -> str:
    rows = [f"| {f.spelling} | {f.notes} |" for f in SCALARS]
    return "\n".join(["| function | as in Spark |", "|---|---|", *rows])


if __name__ == "__main__":
    print(AGGREGATES_MARK)
    print(aggregates_table())
    print(END_MARK)
    print()
    print(FUNCTIONS_MARK)
    print(functions_table())
    print(END_MARK)
