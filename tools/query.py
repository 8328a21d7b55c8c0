"""SQL over the output tables with DuckDB, like the notebook's `%sql` cells.

    python -m tools.query "select * from pages_per_min order by pages desc limit 5"
    python -m tools.query --format csv "select count(*) from user_ip_activity" > n.csv
    python -m tools.query                      # an interactive prompt, views defined
    python -m tools.query --output gs://bucket/prefix "..."

Every table is a view by its own name (`pages_per_min`, `errors_per_min_alert`,
`click_user_sessions`, `user_ip_activity`, `late_events`, `dead_letters`) with the
hive columns `event_date` and `event_hour`; a table without files yet is an empty
view with the right columns. A declared stream the SQL names (`select * from
clickstream limit 10`) is a view of a bounded snapshot of its topic, decoded by its
declaration: the newest `--newest` records of each partition (1000), or those stamped
from `--since` until `--until`; one line on stderr says how much was read. Output:
`table` (readable, the default), `csv` (header then rows), `json` (one object per
line), `parquet` (to a pipe or file).
Bad SQL or an unknown table: DuckDB's message on one line, exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import polars as pl

from config import output_folder, registry_kafka, streams_folder, tables_folder, tool_kafka
from events.streams import Stream
from sources.schemas import with_registry_columns
from sources.snapshot import Bounds, read_snapshot
from sql import all_streams, output_tables
from storage.location import is_local, output_fs, table_files
from storage.tables import Table

_SQL_TYPES = {
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Boolean": "BOOLEAN",
    "Binary": "BLOB",
    "Date": "DATE",
}


def _files(output: str, table: str) -> list[str]:
    """The table's data files as URLs DuckDB can open (through fsspec for remote ones)."""
    fs, root = output_fs(output)
    found = table_files(fs, root, table)
    if is_local(fs):
        return found
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [f"{protocol}://{f}" for f in found]


def _empty_view(table: Table) -> str:
    columns = []
    for name, kind in table.columns:
        sql_type = "TIMESTAMPTZ" if name in table.timestamps else _SQL_TYPES[kind]
        columns.append(f'CAST(NULL AS {sql_type}) AS "{name}"')
    columns += ["CAST(NULL AS DATE) AS event_date", "CAST(NULL AS BIGINT) AS event_hour"]
    return f"SELECT {', '.join(columns)} WHERE false"


def connect(
    output: str, streams_in: str = "", bounds: Bounds | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per output table under `output`, and one per
    declared stream that `streams_in` (the SQL to run) names: a snapshot of its topic
    within `bounds`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    fs, _ = output_fs(output)
    if not is_local(fs):
        con.register_filesystem(fs)
    for table in output_tables(tables_folder(), streams_folder(), registry_kafka()):
        files = _files(output, table.name)
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            source = f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true)"
        else:
            source = _empty_view(table)
        con.execute(f'CREATE VIEW "{table.name}" AS {source}')
    stream_views(con, streams_in, bounds)
    return con


def stream_views(con: duckdb.DuckDBPyConnection, sql: str, bounds: Bounds | None) -> None:
    """A view for each declared stream `sql` names that is no view yet (the tables' views
    are made first: a table wins)."""
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    if not words:
        return
    known = {
        row[0].lower() for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()
    }
    for name, stream in all_streams(streams_folder()).items():
        if name in words and name not in known:
            _stream_view(con, stream, bounds or Bounds())


def _stream_view(con: duckdb.DuckDBPyConnection, stream: Stream, bounds: Bounds) -> None:
    """The view `stream`: a snapshot of its topic, said in one line on stderr."""
    kafka = tool_kafka()
    if kafka is None:
        raise SystemExit(
            f"error: {stream.name} is a stream: its view reads the topic; set "
            "KAFKA_BOOTSTRAP_SERVERS (or KAFKA_CONFIG_FILE)"
        )
    if not stream.columns:
        stream = with_registry_columns({stream.name: stream}, kafka)[stream.name]
    snapshot = read_snapshot(kafka, stream, bounds)
    print(snapshot.summary(), file=sys.stderr, flush=True)
    folder = tempfile.mkdtemp(prefix="clickstream-query-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, f"{stream.name}.parquet")
    snapshot.frame.write_parquet(path)
    con.execute(f"CREATE VIEW \"{stream.name}\" AS SELECT * FROM read_parquet('{path}')")


def one_line(error: Exception) -> str:
    """DuckDB's message without its source excerpt, on one line."""
    text = str(error).split("\n\nLINE ", 1)[0]
    return " ".join(text.split())


def write(result: pl.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        sys.stdout.write(result.write_csv())
    elif fmt == "json":
        sys.stdout.write(result.write_ndjson())
    elif fmt == "parquet":
        if sys.stdout.isatty():
            raise SystemExit("error: --format parquet writes binary: redirect it to a file")
        sys.stdout.flush()
        result.write_parquet(sys.stdout.buffer)
    else:
        with pl.Config(
            tbl_rows=50,
            tbl_cols=-1,
            fmt_str_lengths=60,
            tbl_width_chars=200,
            tbl_hide_dataframe_shape=True,
        ):
            print(result)
        print(f"({result.height} rows)")


def to_frame(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """The result as a Polars frame, built from rows (no pyarrow needed)."""
    names: list[str] = []
    for name in relation.columns:  # `select 1, 1` has two columns named 1
        unique, n = name, 1
        while unique in names:
            n += 1
            unique = f"{name}_{n}"
        names.append(unique)
    rows = relation.fetchall()
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str) -> None:
    relation = con.sql(sql)
    if relation is None:  # a statement without a result (SET, CREATE ...)
        return
    write(to_frame(relation), fmt)


def prompt(
    con: duckdb.DuckDBPyConnection, fmt: str, output: str, bounds: Bounds | None = None
) -> None:
    """A small SQL prompt: statements end with `;`, `.tables` lists the views."""
    with contextlib.suppress(ImportError):  # line editing and history for input()
        import readline  # noqa: F401
    names = ", ".join(
        t.name for t in output_tables(tables_folder(), streams_folder(), registry_kafka())
    )
    print(f"clickstream SQL over {output} (DuckDB). Views: {names}. End with ';', quit with .quit")
    buffer: list[str] = []
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            buffer = []
            continue
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            return
        if not buffer and stripped == ".tables":
            print(names)
            continue
        buffer.append(line)
        if not stripped.endswith(";"):
            continue
        sql, buffer = "\n".join(buffer), []
        try:
            stream_views(con, sql, bounds)
            run(con, sql, fmt)
        except duckdb.Error as ex:
            print(f"error: {one_line(ex)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.query", description="SQL over the output tables (DuckDB)"
    )
    parser.add_argument("sql", nargs="?", help="a query; none opens an interactive prompt")
    parser.add_argument(
        "--output",
        default=output_folder(),
        help="where the tables are (default: $CLICKSTREAM_OUTPUT or ./output)",
    )
    parser.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    parser.add_argument(
        "--newest",
        type=int,
        default=Bounds.newest,
        help="a stream's view: the newest records of each partition (default 1000)",
    )
    parser.add_argument(
        "--since", help="a stream's view: records stamped from this time (ISO-8601, UTC)"
    )
    parser.add_argument("--until", help="... and before this time")
    args = parser.parse_args(argv)
    try:
        bounds = Bounds(max(args.newest, 0), _ms(args.since), _ms(args.until))
    except ValueError as ex:
        raise SystemExit(f"error: --since/--until: {ex}") from None
    try:
        con = connect(args.output, args.sql or "", bounds)
    except (OSError, ValueError) as ex:
        raise SystemExit(f"error: cannot read {args.output}: {ex}") from None
    if args.sql is None:
        prompt(con, args.format, args.output, bounds)
        return
    try:
        run(con, args.sql, args.format)
    except duckdb.Error as ex:
        print(f"error: {one_line(ex)}", file=sys.stderr)
        raise SystemExit(2) from None


def _ms(text: str | None) -> int | None:
    """An ISO-8601 time (UTC unless it says otherwise) as epoch milliseconds."""
    if text is None:
        return None
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return round((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


if __name__ == "__main__":
    main()
