"""Each SQL construct that is not supported is one line naming the file, the line in it and
what is not supported; `python -m bytewax.run` exits 2 with that line, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from setting import ConfigError
from sql import load_tables
from tests.processes import bytewax_run, clean_env, error_lines, new_store

GOOD = """SELECT userid, window.start AS event_start, count(*) AS n
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '1 minute'), userid"""


def _error(tmp_path: Path, sql: str, name: str = "t") -> str:
    folder = tmp_path / "tables"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.sql").write_text(sql)
    with pytest.raises(ConfigError) as raised:
        load_tables(folder)
    message = str(raised.value)
    assert "\n" not in message
    return message


# (SQL, the line of the error, what the message says)
UNSUPPORTED = {
    "join": (
        GOOD.replace("FROM clickstream", "FROM clickstream\nJOIN users ON a = b"),
        3,
        "JOIN is not supported",
    ),
    "subquery": (
        GOOD.replace("FROM clickstream", "FROM (SELECT * FROM clickstream)"),
        2,
        "not a subquery",
    ),
    "unknown column": (GOOD.replace("count(*)", "\n  sum(price)"), 2, "unknown column price"),
    "unknown function": (
        GOOD.replace("count(*)", "percentile(bytes, 0.5)"),
        1,
        "the aggregate PERCENTILE(bytes, 0.5) is not supported",
    ),
    "collect_set, an array column": (
        GOOD.replace("count(*)", "collect_set(ip)"),
        1,
        "the aggregate COLLECT_SET(ip) is not supported",
    ),
    "percentiles as an array": (
        GOOD.replace("count(*)", "percentile_approx(bytes, array(0.5, 0.9))"),
        1,
        "PERCENTILE_APPROX(bytes, ARRAY(0.5, 0.9))",
    ),
    "collect_list, an array column": (
        GOOD.replace("count(*)", "collect_list(ip)"),
        1,
        "is not supported",
    ),
    "date arithmetic": (
        GOOD.replace("count(*) AS n", "count(*) AS n, date_add(to_date(window.start), 1) AS d"),
        1,
        "is not supported",
    ),
    "to_date of a string": (
        GOOD.replace("count(*) AS n", "count(*) AS n, to_date('2026-12-01') AS d"),
        1,
        "needs a timestamp, not a string",
    ),
    "a possessive quantifier, Java's": (
        GOOD.replace("GROUP BY", "WHERE request RLIKE 'GET /[a-z]*+' GROUP BY"),
        3,
        "a possessive quantifier (*+, ++, ?+) means something else to Python's re",
    ),
    "a Unicode class, Java's": (
        # in Spark's SQL a backslash is written twice in a string literal
        GOOD.replace("GROUP BY", "WHERE regexp_extract(request, '\\\\p{Alpha}', 0) = 'x' GROUP BY"),
        3,
        "a \\p{...} character class means something else to Python's re",
    ),
    "function in WHERE": (
        GOOD.replace("GROUP BY", "WHERE\n  soundex(request) = 'x'\nGROUP BY"),
        4,
        "the function SOUNDEX(request) is not supported here",
    ),
    "CASE of two types": (
        GOOD.replace("count(*)", "\n  max(CASE WHEN status > 400 THEN 'bad' ELSE 0 END)"),
        2,
        "mixes number, string: CAST the branches to one type",
    ),
    "a group the pattern lacks": (
        GOOD.replace("count(*)", "max(regexp_extract(request, 'G(E)T', 2))"),
        1,
        "the pattern has no group 2",
    ),
    "a pattern from a column": (
        GOOD.replace("GROUP BY", "WHERE request RLIKE ip\nGROUP BY"),
        3,
        "the pattern must be a string literal",
    ),
    "trim of other characters": (
        GOOD.replace("count(*)", "max(trim(BOTH 'G' FROM request))"),
        1,
        "only the one-argument form is supported",
    ),
    "an unnamed expression": (
        GOOD.replace("count(*) AS n", "count(*) * 2"),
        1,
        "SELECT COUNT(*) * 2: name it with AS",
    ),
    "an event column in an expression": (
        GOOD.replace("count(*) AS n", "count(*) + bytes AS x"),
        1,
        "bytes is neither in GROUP BY nor aggregated",
    ),
    "split by a pattern with groups": (
        GOOD.replace("count(*)", "max(split(ip, '([.])')[1])"),
        1,
        "a pattern with groups; write (?:...)",
    ),
    "split_part's part 0": (
        GOOD.replace("count(*)", "max(split_part(ip, '.', 0))"),
        1,
        "parts count from 1",
    ),
    "arithmetic on the window's bounds": (
        GOOD.replace("count(*) AS n", "count(*) AS n, window.end - window.start AS d"),
        1,
        "window.end - window.start: arithmetic on a timestamp",
    ),
    "DIV of doubles": (
        GOOD.replace("count(*)", "sum(bytes / 2 DIV 3)"),
        1,
        "DIV takes integers",
    ),
    "no watermark": (
        GOOD.replace(" WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS", ""),
        1,
        "no WATERMARK: windows would never close",
    ),
    "watermark on another column": (
        GOOD.replace("WATERMARK timestamp", "WATERMARK userid"),
        1,
        "WATERMARK must be on timestamp",
    ),
    "no window": (
        GOOD.replace("window(timestamp, '1 minute'), userid", "userid"),
        3,
        "GROUP BY needs window(...) or session_window(...)",
    ),
    "window offset": (
        GOOD.replace("'1 minute')", "'1 minute', '1 minute', '10 seconds')"),
        3,
        "supported are window(timestamp, size[, slide])",
    ),
    "a slide longer than the window": (
        GOOD.replace("'1 minute')", "'60 seconds', '70 seconds')"),
        3,
        "the slide must not be longer than the window (as in Spark)",
    ),
    "bad duration": (GOOD.replace("'1 minute'", "'a while'"), 3, "is not a duration"),
    "ungrouped column": (
        GOOD.replace("SELECT userid,", "SELECT userid, ip,"),
        1,
        "ip is neither in GROUP BY nor aggregated",
    ),
    "no window start": (
        GOOD.replace("window.start AS event_start, ", ""),
        1,
        "SELECT needs window.start",
    ),
    "the window struct": (
        GOOD.replace("window.start AS event_start", "window"),
        1,
        "not the window",
    ),
    "a date pattern letter that is not supported": (
        GOOD.replace("count(*) AS n", "date_format(window.start, 'EEE HH') AS day"),
        1,
        "patterns of yyyy, yy, MM, dd, HH, mm, ss and SSS are supported",
    ),
    "hour of a number": (
        GOOD.replace("FROM clickstream", "FROM clickstream\n").replace(
            "GROUP BY", "WHERE hour(userid) > 3 GROUP BY"
        ),
        4,
        "HOUR(userid): needs a timestamp, not a number",
    ),
    "a date_trunc unit that is not one": (
        GOOD.replace("count(*) AS n", "date_trunc('DECADE', window.start) AS d"),
        1,
        "the unit is one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR",
    ),
    "a timestamp compared with a number": (
        GOOD.replace("GROUP BY", "WHERE timestamp > 5 GROUP BY"),
        3,
        "compares a timestamp with a number: CAST one",
    ),
    "the sum of a timestamp": (
        GOOD.replace("count(*)", "sum(timestamp)"),
        1,
        "SUM(timestamp): needs a number",
    ),
    "order by": (GOOD + "\nORDER BY userid", 4, "ORDER is not supported"),
    "limit": (GOOD + "\nLIMIT 5", 4, "LIMIT is not supported"),
    "select distinct": (
        GOOD.replace("SELECT", "SELECT DISTINCT"),
        1,
        "DISTINCT is not supported",
    ),
    "two statements": (GOOD + ";\n" + GOOD, 1, "one SELECT per file, found 2 statements"),
    "not a select": ("INSERT INTO x VALUES (1)", 1, "only SELECT is supported"),
    "a parse error": (GOOD.replace("GROUP BY", "GROUP BY BY"), 3, "cannot parse"),
    "an unterminated string": (
        GOOD.replace("GROUP BY", "WHERE request LIKE '%html\nGROUP BY"),
        1,
        "cannot parse: Error tokenizing",
    ),
    "unknown stream": (GOOD.replace("FROM clickstream", "FROM pageviews"), 2, "unknown stream"),
    "a column grouped only inside an expression": (
        GOOD.replace("), userid", "), userid + 1"),
        1,
        "userid is neither in GROUP BY nor aggregated",
    ),
    "having on a column": (
        GOOD + "\nHAVING userid > 3",
        4,
        "a condition on a column belongs in WHERE",
    ),
    "aggregate in WHERE": (
        GOOD.replace("GROUP BY", "WHERE count(*) > 1\nGROUP BY"),
        3,
        "an aggregate belongs in SELECT or HAVING",
    ),
    "compare a string with a number": (
        GOOD.replace("GROUP BY", "WHERE request > 3\nGROUP BY"),
        3,
        "compares a string with a number: CAST one",
    ),
    "sum of a string": (GOOD.replace("count(*)", "sum(request)"), 1, "needs a number"),
    "window function": (
        GOOD.replace("count(*) AS n", "count(*) AS n, rank() OVER (ORDER BY userid) AS r"),
        1,
        "OVER (window functions) is not supported",
    ),
    "IN a subquery": (
        GOOD.replace("GROUP BY", "WHERE userid IN (SELECT 1)\nGROUP BY"),
        3,
        "IN is supported with a list of values",
    ),
    "two columns of one name": (
        GOOD.replace("count(*) AS n", "count(*) AS n, max(bytes) AS n"),
        1,
        "two columns are named n",
    ),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_an_unsupported_construct_is_one_line_naming_file_line_and_what(tmp_path, case):
    sql, line, what = UNSUPPORTED[case]
    message = _error(tmp_path, sql)
    where = f"{tmp_path / 'tables' / 't.sql'}:{line}: "
    assert message.startswith(where), message
    assert what in message, message


@pytest.mark.parametrize("name", ["late_events", "my-table"])
def test_a_table_is_named_after_its_file(tmp_path, name):
    assert "not a name for one" in _error(tmp_path, GOOD, name=name)


def test_a_folder_without_tables_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"holds no \.sql file"):
        load_tables(tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        load_tables(tmp_path / "missing")


def test_bytewax_run_exits_2_with_the_line(tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "bad.sql").write_text(GOOD.replace("count(*)", "\n  sum(price)"))
    env = clean_env(CLICKSTREAM_TABLES=str(folder), CLICKSTREAM_OUTPUT=str(tmp_path / "out"))
    run = bytewax_run("dataflows.clickstream:flow", env, new_store(tmp_path / "recovery"))
    assert run.returncode == 2, run.stderr[-3000:]
    (line,) = error_lines(run.stderr)
    assert f"{folder / 'bad.sql'}:2: unknown column price" in line
    assert "Traceback" not in run.stderr
