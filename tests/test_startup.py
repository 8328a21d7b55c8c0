"""What a start pays: a run imports only what its settings use.

A plain JSON run with local output imports no SQL parser (its tables come from the compile
cache), no Schema Registry client, no DataSketches, no Avro or Protobuf library, no
deltalake and no gcsfs: together they were a second of every start (docs/performance.md).
Each test here fails when one of them comes back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, clean_env, new_store

# Modules (by their top package, or a dotted prefix) that a plain JSON run to local disk
# must not import, and what each is for.
UNUSED_BY_A_PLAIN_RUN = {
    "sqlglot": "the SQL compiler, for SQL the cache has not seen",
    "confluent_kafka.schema_registry": "a Schema Registry",
    "authlib": "the Schema Registry client's OAuth",
    "httpx": "the Schema Registry client's HTTP",
    "datasketches": "approx_count_distinct",
    "numpy": "DataSketches",
    "fastavro": "Avro",
    "google": "Protobuf, and gcsfs's GCS client",
    "grpc_tools": "Protobuf schemas",
    "deltalake": "Delta output",
    "gcsfs": "gs:// output",
    "pyarrow": "nothing of ours",
    "duckdb": "the query tool",
}


def _imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` listed."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if "|" in line}


def _unwanted(imported: set[str]) -> list[str]:
    return sorted(
        f"{m} ({UNUSED_BY_A_PLAIN_RUN[p]})"
        for m in imported
        for p in UNUSED_BY_A_PLAIN_RUN
        if m == p or m.startswith(f"{p}.")
    )


def _run(tmp_path: Path, flow: str, cache: Path, *python: str) -> subprocess.CompletedProcess:
    recovery = new_store(tmp_path / f"recovery-{len(list(tmp_path.glob('recovery-*')))}")
    run = ["-m", "bytewax.run", f"dataflows.{flow}:flow", "-r", str(recovery), "-s", "1"]
    return subprocess.run(
        [sys.executable, *python, *run, "-b", "0"],
        cwd=ROOT,
        env=clean_env(
            CLICKSTREAM_SOURCE="datagen",
            CLICKSTREAM_DATAGEN_COUNT="2000",
            CLICKSTREAM_DATAGEN_RATE="100000",
            CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
            CLICKSTREAM_SQL_CACHE=str(cache),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("flow", ["clickstream", "user_clickstream"])
def test_a_plain_run_imports_only_what_it_uses(tmp_path, flow):
    cache = tmp_path / "sql-cache"
    first = _run(tmp_path, flow, cache, "-X", "importtime")
    assert first.returncode == 0, first.stderr[-3000:]
    # The first start compiles the tables: it needs the SQL parser, and keeps what it made.
    assert "sqlglot" in _imported(first.stderr), "-X importtime lists what was imported"
    assert list(cache.glob("*.py"))

    again = _run(tmp_path, flow, cache, "-X", "importtime")
    assert again.returncode == 0, again.stderr[-3000:]
    imported = _imported(again.stderr)
    assert "polars" in imported, "the sink writes Parquet with Polars"
    assert not _unwanted(imported)
    assert sorted(p.name for p in (tmp_path / "out").iterdir())


def test_importing_a_dataflow_imports_no_polars_and_no_sql_parser():
    # `python -m bytewax.run` imports the module first; Polars waits for the first flush.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dataflows.clickstream"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = _imported(proc.stderr)
    assert "dataflows.clickstream" in imported
    assert "polars" not in imported
    assert not _unwanted(imported)
