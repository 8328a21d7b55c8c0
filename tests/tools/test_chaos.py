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

# one worker runs the module, so the run happens once (`just test` distributes by group)
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.gcs,
    pytest.mark.monitoring,
    pytest.mark.slow,
    pytest.mark.xdist_group("chaos"),
]


@pytest.fixture(scope="session")  # not module: xdist may interleave other modules
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """One 2-minute chaos run: its directory, verdict line and failures."""
    work = tmp_path_factory.mktemp("chaos") / f"seed-{SEED}"
    verdict, line = chaos(Options(minutes=2, seed=SEED, workdir=work))
    return work, line, verdict.failures


def test_a_two_minute_chaos_run_with_every_fault_passes_the_checker(run):
    work, line, failures = run
    assert not failures, f"{line}\n" + "\n".join(failures)
    facts = json.loads((work / "run.json").read_text())
    assert set(facts["faults"]) == set(KINDS), facts["faults"]
    assert facts["overlapping_faults"] > 0
    assert sum(facts["restarts"].values()) > 0, "a fault that restarts nothing proves little"
    assert line.startswith(f"chaos seed {SEED}, 2 min: PASS: ")
    for count in ("records produced", "rows checked", "duplicates 0", "losses 0", "dump "):
        assert count in line, line


def _planted(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run's output and alert journal to plant a bug in (the dump is
    shared); the run directory of the copy and its output."""
    copy = tmp_path / "run"
    copy.mkdir()
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


def test_the_checker_finds_a_row_dropped_from_an_output_file(run, tmp_path):
    copy, output = _planted(run[0], tmp_path)
    victim = _a_file(output, "pages_per_min")
    pl.read_parquet(victim).slice(1).write_parquet(victim)

    failures = check(copy).failures
    assert any(f.startswith("pages_per_min: 1 rows missing") for f in failures), failures


def test_the_checker_finds_a_row_written_twice(run, tmp_path):
    copy, output = _planted(run[0], tmp_path)
    victim = _a_file(output, "errors_per_min_alert")
    pl.read_parquet(victim).head(1).write_parquet(victim.with_name("planted.parquet"))

    failures = check(copy).failures
    assert any(f.startswith("errors_per_min_alert: 1 rows written twice") for f in failures), (
        failures
    )


def test_the_checker_names_an_alert_row_never_posted(run, tmp_path):
    copy, _ = _planted(run[0], tmp_path)
    journal = copy / "alerts-accepted.jsonl"
    posts = [json.loads(line) for line in journal.read_text().splitlines()]
    first = posts[0][0]
    key = (first["labels"]["status"], first["startsAt"])

    def other(alert: dict) -> bool:
        return (alert["labels"].get("status"), alert["startsAt"]) != key

    journal.write_text("".join(json.dumps([a for a in p if other(a)]) + "\n" for p in posts))

    failures = check(copy).failures
    named = [f for f in failures if "alert rows never reached Alertmanager" in f]
    assert named and named[0].startswith("1 alert rows") and f"status {key[0]}" in named[0], (
        failures
    )
