"""The compile cache: a table compiled before is built from the kept source, with no SQL
parser, and is the same table; anything that could change the result compiles afresh."""

from __future__ import annotations

import logging
import os

import msgspec
import pytest

import sql.compiler
import sql.table
from sql import REPO_TABLES, STREAMS, load_tables
from sql.table import compile_table

PAGES = (REPO_TABLES / "pages_per_min.sql").read_text()
Click = STREAMS["clickstream"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CLICKSTREAM_SQL_CACHE", str(folder))
    return folder


def _same(a, b) -> None:
    assert a.definition == b.definition and a.table == b.table and a.window == b.window
    click = Click(ip="1.2.3.4", userid=3, request="GET /a.html HTTP/1.1", status=404)
    other = Click(ip="1.2.3.4", userid=3, request="GET /a.png HTTP/1.1", status=200)
    for event in (click, other):
        assert a.key(event) == b.key(event)
        assert (a.where is None) == (b.where is None)
        if a.where is not None and b.where is not None:
            assert a.where(event) == b.where(event)
    assert a.row(3, 0, 60_000, (7,)) == b.row(3, 0, 60_000, (7,))


def test_a_table_compiled_before_is_built_from_the_cache(cache, monkeypatch):
    first = compile_table(PAGES, "pages_per_min", STREAMS, 32)
    assert len(list(cache.glob("*.py"))) == 1
    with monkeypatch.context() as m:
        m.setattr(sql.compiler, "compile_source", _refuse)
        again = compile_table(PAGES, "pages_per_min", STREAMS, 32)
    _same(first, again)


def _refuse(*_args: object) -> str:
    raise AssertionError("compiled, though the cache had it")


@pytest.mark.parametrize(
    "change",
    [
        lambda text, name, shards: (text.replace("html", "htm"), name, shards),
        lambda text, name, shards: (text, "pages2", shards),
        lambda text, name, shards: (text, name, shards * 2),
    ],
    ids=["sql", "name", "shards"],
)
def test_what_changes_the_table_compiles_afresh(cache, change):
    compile_table(PAGES, "pages_per_min", STREAMS, 32)
    text, name, shards = change(PAGES, "pages_per_min", 32)
    table = compile_table(text, name, STREAMS, shards)
    assert len(list(cache.glob("*.py"))) == 2
    assert (table.name, table.table.name) == (name, name)


def test_other_stream_columns_compile_afresh(cache):
    compile_table(PAGES, "pages_per_min", STREAMS, 32)
    # the same SQL over a stream whose userid is a string: its key column is a String
    streams: dict[str, type[msgspec.Struct]] = {**STREAMS, "clickstream": _ClickWithTextIds}
    table = compile_table(PAGES, "pages_per_min", streams, 32)
    assert len(list(cache.glob("*.py"))) == 2
    assert dict(table.table.columns)["userid"] == "String"


_ClickWithTextIds = msgspec.defstruct("ClickWithTextIds", [("userid", str, "")], bases=(Click,))


def test_a_damaged_cache_file_is_compiled_again(cache, caplog):
    compile_table(PAGES, "pages_per_min", STREAMS, 32)
    (kept,) = cache.glob("*.py")
    kept.write_text("SqlTable(name='pages_per_min'")  # cut short
    with caplog.at_level(logging.WARNING, logger="sql.table"):
        table = compile_table(PAGES, "pages_per_min", STREAMS, 32)
    assert "is not a compiled table" in caplog.text
    assert table.name == "pages_per_min"
    assert kept.read_text().rstrip().endswith(")")


def test_off_and_unwritable_caches_still_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_SQL_CACHE", "off")
    assert load_tables()
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CLICKSTREAM_SQL_CACHE", str(blocker / "cache"))  # under a file
    assert [t.name for t in load_tables()] == [t.name for t in load_tables(REPO_TABLES)]


def test_repo_tables_from_the_cache_equal_a_fresh_compile(cache, monkeypatch):
    fresh = load_tables()
    with monkeypatch.context() as m:
        m.setattr(sql.compiler, "compile_source", _refuse)
        cached = load_tables()
    assert [t.name for t in fresh] == [t.name for t in cached]
    for a, b in zip(fresh, cached, strict=True):
        assert a.definition == b.definition and a.earlier == b.earlier and a.table == b.table
        assert a.roles == b.roles and a.delay_ms == b.delay_ms
        assert [x.text for x in a.aggregates] == [x.text for x in b.aggregates]


def test_the_cache_keeps_the_newest_entries_only(cache, monkeypatch):
    monkeypatch.setattr(sql.table, "KEPT", 3)
    seen: set[str] = set()
    for i in range(5):
        compile_table(PAGES.replace("html", f"html{i}"), "pages_per_min", STREAMS, 32)
        (new,) = [p for p in cache.glob("*.py") if p.name not in seen]
        seen.add(new.name)
        os.utime(new, (1_000 + i, 1_000 + i))  # file times may be coarser than compiles
    assert len(list(cache.glob("*.py"))) == 3
    # the newest is kept: built again without the compiler
    monkeypatch.setattr(sql.compiler, "compile_source", _refuse)
    compile_table(PAGES.replace("html", "html4"), "pages_per_min", STREAMS, 32)
