"""Compiling a table's SQL: WHERE with SQL's null logic, columns and types from the SELECT,
and a definition that depends on what the SQL computes, not on how it is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.aggregates import ApproxCountDistinct
from operators.windows import Session, Sliding
from sql import REPO_TABLES, STREAMS, load_tables
from sql.table import compile_table

HEAD = "SELECT userid, window.start AS s, count(*) AS n FROM clickstream "
WM = "WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE "
TAIL = " GROUP BY window(timestamp, '1 minute'), userid"
Click, UserClick = STREAMS["clickstream"], STREAMS["user_clickstream"]


def _where(condition: str):
    table = compile_table(f"{HEAD}{WM}WHERE {condition}{TAIL}", "t", STREAMS, 4)
    assert table.where is not None
    return table.where


def _click():  # a declared stream's event
    return Click(ip="10.0.0.1", userid=7, request="GET /a.html HTTP/1.1", status=200)


@pytest.mark.parametrize(
    ("condition", "kept"),
    [
        ("request LIKE '%html%'", True),
        ("request LIKE 'GET%'", True),
        ("request LIKE '%1.1'", True),
        ("request LIKE 'GET /_.html%'", True),
        ("request LIKE 'GET /__.html%'", False),
        ("request NOT LIKE '%png%'", True),
        ("status BETWEEN 200 AND 299", True),
        ("status IN (404, 500)", False),
        ("NOT status IN (404, 500)", True),
        ("status % 7 = 4", True),  # 200 = 28 * 7 + 4
        ("status / 400 = 0.5", True),  # `/` is a double division, as in Spark
        ("CAST(ip AS STRING) = '10.0.0.1' AND CAST('12' AS INT) = 12", True),
        # bytes is null: comparisons with it are null, and a WHERE keeps only true
        ("bytes > 3", False),
        ("NOT bytes > 3", False),
        ("bytes > 3 OR status = 200", True),
        ("bytes > 3 AND status = 200", False),
        ("bytes IS NULL", True),
        ("bytes IS NOT NULL", False),
        ("bytes IN (1, 2)", False),
        ("NOT bytes IN (1, 2)", False),
        ("status / 0 IS NULL", True),
        ("USERID = 7 AND Status = 200", True),  # identifiers are case-insensitive
        # conditional, string and number functions; bytes is null
        ("coalesce(bytes, status) = 200 AND coalesce(bytes, NULL) IS NULL", True),
        ("nullif(status, 200) IS NULL AND nullif(status, 404) = 200", True),
        ("nullif(bytes, 3) IS NULL", True),
        ("CASE WHEN bytes > 5 THEN true END", False),  # null: not kept
        ("CASE WHEN bytes > 5 THEN false ELSE true END", True),  # null is not true
        ("CASE status WHEN 404 THEN 'x' WHEN 200 THEN 'ok' END = 'ok'", True),
        ("IF(status = 200, 1, 2.5) = 1.0", True),
        ("lower(request) LIKE 'get%' AND upper(ip) = '10.0.0.1'", True),
        ("trim('  GET  ') = 'GET' AND length(request) = 20", True),
        ("substr(request, 0, 3) = 'GET' AND substr(request, 1, 3) = 'GET'", True),
        ("substr(request, -8) = 'HTTP/1.1' AND substr(request, -25, 6) = 'G'", True),
        ("substr(request, 5, -1) = ''", True),
        ("concat(ip, '/', userid) = '10.0.0.1/7' AND concat(ip, bytes) IS NULL", True),
        ("startswith(request, 'GET') AND request RLIKE 'a\\.html'", True),
        ("regexp_extract(request, '^GET (/[^ ]*)', 1) = '/a.html'", True),
        ("regexp_extract(request, 'x(y)?', 1) = ''", True),  # no match: empty, not null
        ("abs(-7) = 7 AND floor(7 / 2) = 3 AND ceil(7 / 2) = 4 AND floor(-0.5) = -1", True),
        ("-7 DIV 2 = -3 AND 7 DIV -2 = -3 AND 7 DIV 0 IS NULL", True),
        ("round(2.675, 2) = 2.68 AND round(-2.5) = -3.0 AND round(1250, -2) = 1300", True),
        ("round(bytes, 1) IS NULL AND round(status / 3, 1) = 66.7", True),
        ("split_part(ip, '.', 1) = '10' AND split_part(ip, '.', -1) = '1'", True),
        ("split_part(ip, '.', 9) = '' AND split_part(ip, '', 1) = ip", True),
        ("split(ip, '[.]')[3] = '1' AND split(ip, '[.]')[4] IS NULL", True),
        ("split(ip, '[.]')[-1] IS NULL AND element_at(split(ip, '[.]'), -1) = '1'", True),
    ],
)
def test_where_keeps_what_spark_keeps(condition, kept):
    assert bool(_where(condition)(_click())) is kept


def test_columns_types_and_names_follow_the_select():
    sql = (
        "SELECT CITY, session_window.start, session_window.end AS until, count(*), "
        "count(bytes), sum(bytes), avg(bytes), min(city) AS first_city, max(bytes), "
        "count(DISTINCT ip), approx_count_distinct(ip, 0.01) AS ips "
        "FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS "
        "GROUP BY session_window(timestamp, '30 seconds'), city"
    )
    table = compile_table(sql, "t", STREAMS, 4)
    assert table.window == Session(30_000) and table.delay_ms == 30_000
    assert [(c, t) for c, t in table.table.columns] == [
        ("CITY", "String"),
        ("start", "Int64"),
        ("until", "Int64"),
        ("count(1)", "Int64"),
        ("count(bytes)", "Int64"),
        ("sum(bytes)", "Int64"),
        ("avg(bytes)", "Float64"),
        ("first_city", "String"),
        ("max(bytes)", "Int64"),
        ("count(distinct ip)", "Int64"),
        ("ips", "Int64"),
    ]
    assert table.table.partition_by == "start"
    assert table.table.timestamps == {"start", "until"}
    approx = table.aggregates[-1]
    assert (
        isinstance(approx, ApproxCountDistinct) and approx.lg_k == 14
    )  # 1.04 / sqrt(2^14) = 0.81% <= 1% < 1.15% at 13
    click = UserClick(USERNAME="u", IP="1", CITY="Rome", REQUEST="r", STATUS=200, BYTES=5)
    assert table.key(click) == "Rome"
    assert table.row("Rome", 1, 2, (3, 4, 5, 6.0, "A", 7, 8, 9)) == (
        "Rome",
        1,
        2,
        3,
        4,
        5,
        6.0,
        "A",
        7,
        8,
        9,
    )


def test_window_kinds_and_delays():
    sliding = compile_table(
        HEAD.replace("count(*)", "count(*)") + "WATERMARK timestamp DELAY OF INTERVAL 2 MINUTES"
        " GROUP BY userid, window(timestamp, '60 seconds', '5 seconds')",
        "t",
        STREAMS,
        4,
    )
    assert sliding.window == Sliding(60_000, 5_000) and sliding.delay_ms == 120_000


def test_a_respelt_table_has_the_same_definition_and_a_changed_one_does_not():
    original = (REPO_TABLES / "pages_per_min.sql").read_text()
    respelt = """
        -- the same table, written by someone else
        select userid, WINDOW.START as event_start, window.end AS event_end,
               COUNT(*) as pages   /* html pages */
        from ClickStream
        watermark TIMESTAMP delay of interval 60 seconds
        where Request like '%html%'
        group by window(timestamp,'60 seconds','5 seconds'), userid"""
    definition = compile_table(original, "pages_per_min", STREAMS, 32).definition
    assert compile_table(respelt, "pages_per_min", STREAMS, 32).definition == definition
    changes = [
        ("'%html%'", "'%htm%'"),
        ("60 SECONDS", "61 SECONDS"),
        ("AS pages", "AS n"),
        ("SELECT userid", "SELECT USERID"),  # one column to SQL, another name in the output
    ]
    for change in changes:
        changed = original.replace(*change)
        assert changed != original
        assert compile_table(changed, "pages_per_min", STREAMS, 32).definition != definition


def test_the_repo_tables_are_the_notebooks_four_with_their_earlier_definitions():
    tables = {t.name: t for t in load_tables()}
    assert sorted(tables) == [
        "click_user_sessions",
        "errors_per_min_alert",
        "pages_per_min",
        "user_ip_activity",
    ]
    for table in tables.values():
        assert len(table.earlier) == 1, table.name  # old stores resume (test_old_stores)
        assert [type(a).__name__ for a in table.aggregates] == ["Count"]


def test_an_edited_repo_table_loses_its_earlier_definition(tmp_path: Path):
    sql = (REPO_TABLES / "pages_per_min.sql").read_text().replace("'%html%'", "'%.html%'")
    (tmp_path / "pages_per_min.sql").write_text(sql)
    (table,) = load_tables(tmp_path)
    assert table.earlier == []


def test_group_by_expressions_and_their_select_names():
    sql = (
        "SELECT regexp_extract(request, '^GET (/[^ ]*)', 1) AS path, status >= 500 AS failed, "
        "window.start AS s, count(*) AS n, concat(path, '!') AS loud "
        f"FROM clickstream {WM}"
        "GROUP BY window(timestamp, '1 minute'), path, status >= 500"
    )
    table = compile_table(sql, "t", STREAMS, 4)
    assert table.key(_click()) == ("/a.html", False)
    assert [(c, t) for c, t in table.table.columns] == [
        ("path", "String"),
        ("failed", "Boolean"),
        ("s", "Int64"),
        ("n", "Int64"),
        ("loud", "String"),
    ]
    assert table.roles == ("key", "key", "start", "value", "value")
    assert table.row(("/a.html", True), 0, 60_000, (3,)) == ("/a.html", True, 0, 3, "/a.html!")
    # plain columns keep their attrgetter, as before expressions were allowed
    assert repr(compile_table(f"{HEAD}{WM}{TAIL}", "t", STREAMS, 4).key) == (
        "operator.attrgetter('userid')"
    )
