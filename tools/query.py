"""SQL over the output tables with DuckDB, like the notebook's `%sql` cells.

    python -m tools.query "select * from pages_per_min order by pages desc limit 5"
    python -m tools.query --format csv "select count(*) from user_ip_activity" > n.csv
    python -m tools.query                      # an interactive prompt, views defined
    python -m tools.query --output gs://bucket/prefix "..."

Every table is a view by its own name (`pages_per_min`, `errors_per_min_alert`,
`click_user_sessions`, `user_ip_activity`, `late_events`, `dead_letters`) with the
hive columns `event_date` and `event_hour`; a table without files yet is an empty
view with the right columns. Output: `table` (readable, the default), `csv`
(header then rows), `json` (one object per line), `parquet` (to a pipe or file).
Bad SQL or an unknown table: DuckDB's message on one line, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

import duckdb
import polars as pl

from config import registry_kafka, streams_folder, tables_folder
from sinks.base import Table
from sql import output_tables
from storage.location import is_local, output_fs, table_files

_SQL_TYPES = {
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Boolean": "BOOLEAN",
    "Binary": "BLOB",
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


def connect(output: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per output table under `output`."""
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
    return con


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


def prompt(con: duckdb.DuckDBPyConnection, fmt: str, output: str) -> None:
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
        default=os.environ.get("CLICKSTREAM_OUTPUT", "./output"),
        help="where the tables are (default: $CLICKSTREAM_OUTPUT or ./output)",
    )
    parser.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    args = parser.parse_args(argv)
    try:
        con = connect(args.output)
    except (OSError, ValueError) as ex:
        raise SystemExit(f"error: cannot read {args.output}: {ex}") from None
    if args.sql is None:
        prompt(con, args.format, args.output)
        return
    try:
        run(con, args.sql, args.format)
    except duckdb.Error as ex:
        print(f"error: {one_line(ex)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
