"""A real Alertmanager and Prometheus for tests and demos: Debian's `prometheus-alertmanager`
(0.25) and `prometheus` (2.42, with `promtool`), installed by scripts/setup_monitoring.sh.

    python -m infra.monitoring up      # an Alertmanager; prints CLICKSTREAM_ALERTMANAGER_URL
    python -m infra.monitoring down

Each listens on 127.0.0.1 on a free port, keeps its state under its work directory, and
is stopped by its PID. Alertmanager runs without its cluster listener (it would take
port 9094 on every address).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from infra.server import (
    ServerProcess,
    command_line,
    free_port,
    log_tail,
    started_ticks,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "alerts.yml"
DEFAULT_RUN_DIR = ROOT / ".cache" / "alertmanager" / "run"
ALERTMANAGER = "prometheus-alertmanager"
PROMETHEUS = "prometheus"

# Alertmanager's own defaults wait 30 s before a group's first notification and 5 min
# between updates; a demo and the tests want to see them at once.
QUICK_ROUTE = {"group_by": ["..."], "group_wait": "1s", "group_interval": "1s"}


class MonitoringError(RuntimeError):
    pass


@dataclass
class Server(ServerProcess):
    """A running Alertmanager or Prometheus: where to reach it and how to stop it."""

    workdir: str
    pid: int
    port: int
    started: int = 0  # `infra.server.started_ticks`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise MonitoringError(
            f"{name} is not installed: run scripts/setup_monitoring.sh (`just test` does)"
        )
    return found


def alertmanager_config(webhook_url: str | None = None) -> dict:
    """A configuration that sends every alert to `webhook_url` (resolved ones too), or
    to no one (the alerts are still listed by its API and UI)."""
    receiver: dict = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {**QUICK_ROUTE, "receiver": "default", "repeat_interval": "1h"},
        "receivers": [receiver],
    }


def start_alertmanager(
    workdir: Path | None = None,
    config: dict | None = None,
    port: int | None = None,
    timeout: float = 30.0,
) -> Server:
    """An Alertmanager with `config` (default: `alertmanager_config()`) on `port` (default:
    a free one), ready within `timeout` s. The same `workdir` and `port` start it again
    after a stop."""
    workdir = Path(workdir) if workdir else DEFAULT_RUN_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(json.dumps(config or alertmanager_config()))
    port = port or free_port()
    command = [
        binary(ALERTMANAGER),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return _launch(workdir, "alertmanager", command, port, "/-/ready", timeout)


def start_prometheus(
    workdir: Path,
    targets: list[str],
    alertmanager: str,
    rules: Path = RULES,
) -> Server:
    """A Prometheus scraping `targets` (host:port) as job `clickstream` every second,
    evaluating `rules` as often, and sending its alerts to `alertmanager` (host:port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "clickstream", "static_configs": [{"targets": targets}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    command = [
        binary(PROMETHEUS),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # firing alerts are sent again this often (default 1 min), so an Alertmanager
        # that restarts learns them at once
        "--rules.alert.resend-delay=1s",
        "--log.level=warn",
    ]
    return _launch(workdir, "prometheus", command, port, "/-/ready")


def _launch(
    workdir: Path, name: str, command: list[str], port: int, ready: str, timeout: float = 30.0
) -> Server:
    log = (workdir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
    )
    server = Server(str(workdir), proc.pid, port, started_ticks(proc.pid) or 0)
    (workdir / f"{name}.json").write_text(json.dumps(asdict(server)))

    def answers() -> bool:
        try:
            with urllib.request.urlopen(server.url + ready, timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    tail = partial(log_tail, workdir / f"{name}.log", 20)
    wait_until_ready(server, proc, name, answers, tail, MonitoringError, timeout, 0.1)
    return server


def load(workdir: Path | None = None) -> Server | None:
    state = Path(workdir or DEFAULT_RUN_DIR) / "alertmanager.json"
    return Server(**json.loads(state.read_text())) if state.exists() else None


def main() -> None:
    command_line(
        "alertmanager",
        DEFAULT_RUN_DIR,
        start_alertmanager,
        load,
        where=lambda server: server.url,
        exports=lambda server: f"export CLICKSTREAM_ALERTMANAGER_URL={server.url}",
        error=MonitoringError,
    )


if __name__ == "__main__":
    main()
