"""`just chaos`, short: the whole pipeline (three 2-process clusters, the broker, the
Schema Registry, the GCS emulator and Alertmanager, all real) for 2 minutes under a
nemesis that injects every kind of fault, overlapping; then the independent checker.

And the checker catches what it must: on copies of the run's output with a planted bug
(a row dropped, a row written twice, an alert never posted), its verdict fails and names
the bug."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from tools.chaos.checker import check
from tools.chaos.nemesis import KINDS
from tools.chaos.run import Options, chaos

SEED = 1  # the seed whose run caught librdkafka aborting a process (docs/known-limits.md)

pytestmark = [pytest.mark.kafka, pytest.mark.gcs, pytest.mark.monitoring, pytest.mark.slow]


def test_a_two_minute_chaos_run_passes_and_the_checker_catches_planted_bugs(
    kafka_bootstrap, registry, tmp_path
):
    # one test, so that one pytest-xdist worker runs it once (it is collected first, see
    # conftest.py); the shared broker and registry fixtures make sure their jars are
    # fetched before the run starts its own
    work = tmp_path / f"seed-{SEED}"
    # half the default rate: the run shares the 2 cores with the rest of the suite
    verdict, line = chaos(Options(minutes=2, seed=SEED, workdir=work, rate=100))
    assert not verdict.failures, f"{line}\n" + "\n".join(verdict.failures)
    facts = json.loads((work / "run.json").read_text())
    assert set(facts["faults"]) == set(KINDS), facts["faults"]
    assert facts["overlapping_faults"] > 0
    assert sum(facts["restarts"].values()) > 0, "a fault that restarts nothing proves little"
    assert line.startswith(f"chaos seed {SEED}, 2 min: PASS: ")
    for count in ("records produced", "rows checked", "duplicates 0", "losses 0", "dump "):
        assert count in line, line

    for planted in (_a_row_dropped, _a_row_written_twice, _an_alert_never_posted):
        copy, output = _planted(work, tmp_path / planted.__name__)
        expected = planted(copy, output)
        failures = check(copy).failures
        assert any(f.startswith(expected) for f in failures), (planted.__name__, failures)


def _planted(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run's output and alert journal to plant a bug in (the dump is
    shared); the run directory of the copy and its output."""
    copy = tmp_path / "run"
    copy.mkdir(parents=True)
    facts = json.loads((run_dir / "run.json").read_text())
    output = copy / "output"
    shutil.copytree(facts["output"], output)
    shutil.copy(run_dir / "alerts-accepted.jsonl", copy)
    if (run_dir / "delta-polls.jsonl").exists():
        shutil.copy(run_dir / "delta-polls.jsonl", copy)
    (copy / "run.json").write_text(json.dumps({**facts, "output": str(output)}))
    return copy, output


def _a_file(output: Path, table: str) -> Path:
    files = sorted((output / "clickstream" / table).rglob("*.parquet"))
    return max(files, key=lambda f: pl.read_parquet(f).height)


def _a_row_dropped(copy: Path, output: Path) -> str:
    victim = _a_file(output, "pages_per_min")
    pl.read_parquet(victim).slice(1).write_parquet(victim)
    return "pages_per_min: 1 rows missing"


def _a_row_written_twice(copy: Path, output: Path) -> str:
    victim = _a_file(output, "errors_per_min_alert")
    pl.read_parquet(victim).head(1).write_parquet(victim.with_name("planted.parquet"))
    return "errors_per_min_alert: 1 rows written twice"


def _an_alert_never_posted(copy: Path, output: Path) -> str:
    """Every post of one alert row taken out of the journal of accepted posts."""
    journal = copy / "alerts-accepted.jsonl"
    posts = [json.loads(line) for line in journal.read_text().splitlines()]
    first = posts[0][0]
    key = (first["labels"]["status"], first["startsAt"])

    def other(alert: dict) -> bool:
        return (alert["labels"].get("status"), alert["startsAt"]) != key

    journal.write_text("".join(json.dumps([a for a in p if other(a)]) + "\n" for p in posts))
    return "1 alert rows never reached Alertmanager: status " + key[0]
