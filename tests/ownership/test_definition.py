"""A store resumes under a definition of the same meaning, however it is spelt, and is
refused under one that computes something else (`ownership.definition`).

Definitions are written as the window operators wrote them before the tables came from
SQL (the stores of that time hold such texts), their functions by `operators.describe`;
lambdas below are spelt as a new release might spell them (ruff reformats, a renamed
argument).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import pytest

from operators.describe import describe
from operators.windows import Sliding
from ownership.definition import check_definition, meaning
from setting import ConfigError

THRESHOLD = 5
pages = 7  # a module constant that shares its name with an argument and an attribute


def _definition(where: Callable | None, having: Callable | None) -> dict[str, str]:
    errors = (
        f"{Sliding(60_000, 20_000)}, delay 60000 ms, key {describe(attrgetter('status'))}, "
        f"where {describe(where)}, having {describe(having)}, 32 shards"
    )
    return {"errors_per_min_alert": errors, "dead_letters": "rows"}


def _committed_store(tmp_path: Path, definition: dict[str, str]) -> Path:
    """A recovery store with a committed epoch, written under `definition`."""
    store = tmp_path / "recovery"
    store.mkdir()
    with contextlib.closing(sqlite3.connect(store / "part-0.sqlite3")) as db:
        db.execute("CREATE TABLE commits (worker_index INTEGER, epoch INTEGER)")
        db.execute("INSERT INTO commits VALUES (0, 1)")
        db.commit()
    check_definition(store, "clickstream", definition)
    return store


SHIPPED = _definition(lambda c: c.status > 400, lambda errors: errors > 5)


# fmt: off
REFORMATTED = _definition(lambda c: (c.status>400), lambda errors: (
    errors > 5
))
# fmt: on


@pytest.mark.parametrize(
    "spelt",
    [
        REFORMATTED,
        _definition(lambda click: click.status > 400, lambda n: n > 5),
        _definition(lambda c: c.status > 400, lambda errors: errors > THRESHOLD),
    ],
    ids=["reformatted", "renamed argument", "constant named"],
)
def test_the_same_meaning_spelt_otherwise_resumes(tmp_path, spelt):
    store = _committed_store(tmp_path, SHIPPED)
    check_definition(store, "clickstream", spelt)
    # and from now on the store is this spelling's
    assert json.loads((store / "definition-clickstream.json").read_text()) == spelt


def test_a_changed_constant_is_refused(tmp_path):
    store = _committed_store(tmp_path, SHIPPED)
    saved = (store / "definition-clickstream.json").read_text()
    threshold = 6
    for changed in (
        _definition(lambda c: c.status > 400, lambda errors: errors > 6),
        _definition(lambda c: c.status > 400, lambda errors: errors > threshold),
        _definition(lambda c: c.status >= 400, lambda errors: errors > 5),
        _definition(lambda c: c.status > 400, None),
    ):
        with pytest.raises(ConfigError, match="changed since the recovery store") as refused:
            check_definition(store, "clickstream", changed)
        assert "errors_per_min_alert:" in str(refused.value)
        assert len(str(refused.value).splitlines()) == 1
    assert (store / "definition-clickstream.json").read_text() == saved, "left as it was"


def test_a_store_of_the_earlier_spelling_means_the_same():
    # what the version of 2026-12-01 saved (tests/data/stores-2026-12-01.tar.gz)
    earlier = (
        "Sliding(length_ms=60000, slide_ms=20000), delay 60000 ms, key attrgetter('status'), "
        "where where=lambda c: c.status > 400, having having=lambda errors: errors > 5, "
        "32 shards"
    )
    assert meaning(earlier) == meaning(SHIPPED["errors_per_min_alert"])
    assert meaning(earlier) != meaning(earlier.replace("errors > 5", "errors > 50"))
    assert meaning(earlier) != meaning(earlier.replace("c.status > 400", "c.bytes > 400"))


def test_constants_are_put_in_but_arguments_stay_arguments():
    assert describe(lambda n: n > THRESHOLD) == "lambda n: n > 5"
    assert describe(lambda pages: pages.pages > 1) == "lambda pages: pages.pages > 1"
