"""deploy/Containerfile without a container runtime: what it copies is what the dataflows
import from the repo, and no test or benchmark infrastructure."""

from __future__ import annotations

import re
import subprocess
import sys

from config import DATAFLOWS
from tests.processes import ROOT, clean_env

CONTAINERFILE = ROOT / "deploy" / "Containerfile"
NOT_SHIPPED = {"tests", "infra", "benchmarks", "tools", "scripts"}


def copied() -> set[str]:
    """The repo's files and folders the image's build stage copies."""
    names: set[str] = set()
    for line in CONTAINERFILE.read_text().splitlines():
        found = re.match(r"COPY (?!--from)(.+) \S+$", line)
        if found:
            names |= set(found.group(1).split())
    return names


def repo_imports() -> set[str]:
    """The repo's top-level modules and packages that the entrypoint and every dataflow
    import when they are built (on datagen, so that no broker is needed)."""
    probe = (
        "import sys, deploy.entrypoint\n"
        + "".join(f"import dataflows.{d}\n" for d in DATAFLOWS)
        + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=clean_env(CLICKSTREAM_SOURCE="datagen", CLICKSTREAM_METRICS_PORT=""),
        capture_output=True,
        text=True,
        check=True,
    )
    names = done.stdout.split()
    return {n for n in names if (ROOT / n).is_dir() or (ROOT / f"{n}.py").is_file()}


def test_the_image_copies_what_the_dataflows_import_and_no_test_infrastructure():
    shipped = copied()
    needed = {n if (ROOT / n).is_dir() else f"{n}.py" for n in repo_imports()}
    assert needed - shipped == set(), "the image lacks modules the dataflows import"
    assert {"streams", "tables"} <= shipped, "the declarations and the SQL of the tables"
    assert shipped & NOT_SHIPPED == set()
    assert "uv sync --frozen --no-dev" in CONTAINERFILE.read_text()
