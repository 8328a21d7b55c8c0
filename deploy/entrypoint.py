"""One entrypoint for every way of running a dataflow: it turns the platform's facts into
`python -m bytewax.run` flags, then becomes that process.

    python -m deploy.entrypoint clickstream          # alone: a plain run
    HOSTNAME=clickstream-2 CLICKSTREAM_REPLICAS=3 python -m deploy.entrypoint clickstream
    # -> python -m bytewax.run dataflows.clickstream:flow -w 1 -i 2
    #    -a "clickstream-0.clickstream:9999;clickstream-1.clickstream:9999;..."

On Kubernetes, a StatefulSet pod's ordinal (from `HOSTNAME`) is its process id, and the
headless Service's DNS names are the addresses (`config.Launch`). With a recovery store
(`CLICKSTREAM_RECOVERY_DIR`), the flags `-r -s -b` are added, and the store is created
once when missing: process 0 creates it, the others wait for it. A bad or missing fact
is one line, exit status 2. `--print` prints the command instead of running it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from config import Launch
from setting import ConfigError

READY = ".clickstream-store-ready"
"""The file process 0 writes in the recovery store once it has every partition."""


def command(launch: Launch) -> list[str]:
    """The `python -m bytewax.run` command line for `launch`."""
    args = [sys.executable, "-m", "bytewax.run", f"dataflows.{launch.dataflow}:flow"]
    args += ["-w", str(launch.workers)]
    if launch.replicas > 1:
        args += ["-i", str(launch.ordinal), "-a", ";".join(launch.addresses())]
    if launch.recovery is not None:
        args += ["-r", launch.recovery, "-s", f"{launch.snapshot_s:g}"]
        args += ["-b", f"{launch.backup_s:g}"]
    return args


def environment(launch: Launch, env: dict[str, str]) -> dict[str, str]:
    """`env` for the dataflow. A process serves `/metrics` and `/health` on
    `CLICKSTREAM_METRICS_PORT` plus its process id, so that processes sharing a host do
    not collide; a pod has a host of its own, and its probes and scrape annotation name
    one port for every pod: the entrypoint takes the id back off."""
    out = dict(env)
    base = env.get("CLICKSTREAM_METRICS_PORT", "").strip()
    if launch.replicas > 1 and base.isdigit():
        out["CLICKSTREAM_METRICS_PORT"] = str(int(base) - launch.ordinal)
    return out


def ensure_store(launch: Launch, wait_s: float = 300.0) -> None:
    """The recovery store exists before Bytewax opens it: process 0 creates it when it
    has no partitions yet (`python -m bytewax.recovery`), then marks it ready; the other
    processes wait for the mark (a store made by hand, with its partitions, counts too).
    `ConfigError` when it does not come in `wait_s`."""
    if launch.recovery is None:
        return
    store = Path(launch.recovery)
    ready = store / READY
    if launch.ordinal == 0:
        store.mkdir(parents=True, exist_ok=True)
        if not any(store.glob("part-*.sqlite3")):
            subprocess.run(
                [sys.executable, "-m", "bytewax.recovery", str(store), str(launch.recovery_parts)],
                check=True,
            )
        ready.touch()
        return
    deadline = time.monotonic() + wait_s
    while not ready.exists():
        if time.monotonic() > deadline:
            raise ConfigError(
                f"CLICKSTREAM_RECOVERY_DIR: {store} was not made ready by process 0 within "
                f"{wait_s:g} s (is the volume shared by every pod?)"
            )
        time.sleep(0.2)


def main(argv: list[str]) -> None:
    show = "--print" in argv
    args = [a for a in argv if a != "--print"]
    try:
        launch = Launch.from_env(os.environ, args)
        if show:
            print(" ".join(command(launch)))
            return
        ensure_store(launch)
    except ConfigError as ex:
        print(f"error: {ex}", file=sys.stderr)
        raise SystemExit(2) from None
    found = command(launch)
    os.execve(found[0], found, environment(launch, dict(os.environ)))


if __name__ == "__main__":
    main(sys.argv[1:])
