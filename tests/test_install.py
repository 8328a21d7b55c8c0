"""A fresh clone installs exactly what the suite passed with: uv.lock matches pyproject.toml,
.venv holds exactly the versions the lock names, and `just setup` finds a Python 3.10-3.12
wherever one is, or says in one line how to get one."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.processes import ROOT

UV = ROOT / ".cache" / "uv" / "bin" / "uv"
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
PROJECT = "clickstream-pipeline"


def _uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert UV.exists(), "scripts/setup.sh installs uv into .cache/uv"
    return subprocess.run([str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_lock_matches_pyproject():
    check = _uv("lock", "--check")
    assert check.returncode == 0, check.stderr


def test_a_lock_that_no_longer_matches_pyproject_fails_the_check(tmp_path):
    shutil.copy(ROOT / "uv.lock", tmp_path)
    (tmp_path / "native").mkdir()  # our Rust package, a path dependency: its metadata
    shutil.copy(ROOT / "native" / "pyproject.toml", tmp_path / "native")
    pyproject = (ROOT / "pyproject.toml").read_text()
    dropped = '    "tqdm>=4.66,<5",\n'
    assert dropped in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(dropped, ""))
    check = _uv("lock", "--check", cwd=tmp_path)
    assert check.returncode != 0
    assert "needs to be updated" in check.stderr, check.stderr


def test_the_venv_holds_exactly_the_versions_the_lock_names():
    assert Path(sys.prefix) == ROOT / ".venv", "run the suite with .venv's Python (`just test`)"
    export = _uv(
        "export", "--frozen", "--extra", "dev", "--no-hashes", "--no-emit-project", "--no-header"
    )
    assert export.returncode == 0, export.stderr
    locked = {}
    for line in export.stdout.splitlines():
        requirement, _, marker = line.partition(";")
        if not requirement.strip() or requirement.lstrip().startswith("#"):
            continue
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # for another Python or platform
        if requirement.startswith("./"):  # a package of this repo (native/), built here
            project = tomllib.loads((ROOT / requirement / "pyproject.toml").read_text())
            name, version = project["project"]["name"], project["project"]["version"]
        else:
            name, _, version = requirement.strip().partition("==")
        locked[canonicalize_name(name)] = version
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions(path=sys.path)
        if Path(str(d.locate_file(""))).resolve().is_relative_to(ROOT / ".venv")
    }
    installed.pop(canonicalize_name(PROJECT), None)
    assert len(locked) > 50, export.stdout
    assert installed == locked


def _only_path(tmp_path: Path, pythons: dict[str, Path]) -> dict[str, str]:
    """An environment whose PATH has the shell tools and exactly these pythons, and a HOME
    without pyenv or uv's Pythons."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "ls", "sort", "cat", "cut", "sha256sum", "env", "rm", "mkdir"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, target in pythons.items():
        (bin_dir / name).symlink_to(target)
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": str(bin_dir), "HOME": str(home), "UV_PYTHON_INSTALL_DIR": str(home / "uv")}


def _find_python(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "find_python.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pyenv_python(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    assert found, f"pyenv has no Python {version} on this machine"
    return found[-1]


def test_python_3_12_on_path_is_found(tmp_path):
    env = _only_path(tmp_path, {"python3.12": _pyenv_python("3.12")})
    found = _find_python(env)
    assert found.returncode == 0, found.stderr
    assert "3.12" in found.stdout


def test_a_pyenv_python_is_found_when_path_has_none(tmp_path):
    env = _only_path(tmp_path, {"python3": _pyenv_python("3.13")})
    versions = Path(env["HOME"]) / ".pyenv" / "versions"
    versions.mkdir(parents=True)
    (versions / "3.11").symlink_to(_pyenv_python("3.11").parents[1])
    found = _find_python(env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(versions / "3.11" / "bin" / "python3")


def test_a_uv_managed_python_is_found_when_path_and_pyenv_have_none(tmp_path):
    env = _only_path(tmp_path, {"python3": _pyenv_python("3.13")})
    # laid out as `uv python install 3.12` lays it out (no download here)
    managed = Path(env["UV_PYTHON_INSTALL_DIR"]) / "cpython-3.12.1-linux-x86_64-gnu" / "bin"
    managed.mkdir(parents=True)
    (managed / "python3.12").symlink_to(_pyenv_python("3.12"))
    (managed / "python3").symlink_to("python3.12")
    (managed / "python").symlink_to("python3.12")
    found = _find_python({**env, "UV": str(UV)})
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(managed / "python3.12")


@pytest.mark.parametrize("how", ["scripts/setup.sh", "just setup"])
def test_only_python_3_13_is_one_line_saying_how_to_get_one(tmp_path, how):
    """A copy of the repo's setup files (no .venv) on a PATH whose only python3 is 3.13."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("justfile", "pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, repo)
    for script in (ROOT / "scripts").glob("*.sh"):
        shutil.copy(script, repo / "scripts")
    shutil.copy(ROOT / "scripts" / "uv-requirements.txt", repo / "scripts")
    # uv is there already, as after an earlier setup: it must not find a Python either
    (repo / ".cache").mkdir()
    shutil.copytree(ROOT / ".cache" / "uv", repo / ".cache" / "uv", symlinks=True)
    env = _only_path(tmp_path, {"python3": _pyenv_python("3.13"), "just": ROOT / ".venv/bin/just"})
    if how == "scripts/setup.sh":
        argv = ["bash", "scripts/setup.sh"]
    else:
        argv = [str(ROOT / ".venv" / "bin" / "just"), "setup"]
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith("error: need Python 3.11-3.12"), lines
    assert "uv python install 3.12" in lines[0]
    assert not (repo / ".venv").exists()


def test_every_package_of_the_repo_is_installed():
    """A package missing from pyproject's list imports in the repo's folder (the tests' cwd)
    but not from anywhere else, as `python -m bytewax.run` from a user's folder does."""
    packages = sorted(
        p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"
    )
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(listed["packages"]) == packages
    proc = subprocess.run(
        [sys.executable, "-c", f"import {', '.join(packages)}"],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
