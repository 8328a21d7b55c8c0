"""Separate hosts for cluster tests: each a Linux network namespace with its own
link-local address (169.254.x.y), all on one bridge in a namespace of their own.

Needs root (`ip netns`), as CI has. The root namespace's network is never touched:
its only change is a veth pair that lives there for a moment before both ends move
into the test's namespaces. `Hosts.close()` deletes everything it made.

    with Hosts(3) as hosts:
        hosts.popen(0, ["python", "-m", "bytewax.run", ...])   # runs on host 0
        hosts.cut(1)                                            # host 1 off the network
        hosts.mend(1)
        hosts.resolve({"db-0.db": 0, "db-1.db": 1})             # names, as a Service's DNS
        hosts.http_status(0, 9100, "/health")                   # 200, 503; 0: no answer
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    """`count` hosts; host i has address `address(i)`."""

    def __init__(self, count: int) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.count = count
        # one /24 of 169.254.0.0/16 per test run (not .0 or .255, reserved by RFC 3927)
        self.subnet = random.randint(1, 254)
        self.switch = f"cs-sw-{self.tag}"
        self.names = [f"cs-h{i}-{self.tag}" for i in range(count)]
        self.made: list[str] = []

    def address(self, i: int) -> str:
        return f"169.254.{self.subnet}.{i + 1}"

    def __enter__(self) -> Hosts:
        try:
            _ip("netns", "add", self.switch)
            self.made.append(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, name in enumerate(self.names):
                _ip("netns", "add", name)
                self.made.append(name)
                host_end, switch_end = f"ch{i}{self.tag}", f"cs{i}{self.tag}"
                _ip("link", "add", host_end, "type", "veth", "peer", "name", switch_end)
                _ip("link", "set", host_end, "netns", name)
                _ip("link", "set", switch_end, "netns", self.switch)
                _ip("-n", self.switch, "link", "set", switch_end, "master", "br0", "up")
                _ip("-n", name, "addr", "add", f"{self.address(i)}/24", "dev", host_end)
                _ip("-n", name, "link", "set", host_end, "up")
                _ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        self.made = []

    def resolve(self, names: dict[str, int]) -> None:
        """Every host resolves each of `names` to the address of its host number, as a
        headless Service's DNS names resolve to its pods: `ip netns exec` shows a host
        `/etc/netns/<host>/hosts` as its `/etc/hosts`."""
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.address(i)} {name} {name.split('.')[0]}" for name, i in names.items()]
        for name in self.names:
            folder = Path("/etc/netns") / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def http_status(self, i: int, port: int, path: str) -> int:
        """The status a GET of `path` on port `port` of host `i` answers (0: no answer)."""
        probe = (
            "import urllib.request as r, urllib.error as e\n"
            f"try: print(r.urlopen('http://127.0.0.1:{port}{path}', timeout=2).status)\n"
            "except e.HTTPError as x: print(x.code)\n"
            "except Exception: print(0)"
        )
        done = subprocess.run(
            self.command(i, [sys.executable, "-c", probe]), capture_output=True, text=True
        )
        return int(done.stdout.strip() or 0)

    def command(self, i: int, argv: list[str]) -> list[str]:
        """`argv` as run on host `i`."""
        return ["ip", "netns", "exec", self.names[i], *argv]

    def popen(self, i: int, argv: list[str], log: Path, **kw: Any) -> subprocess.Popen:
        """Start `argv` on host `i`, its output appended to `log`."""
        out = log.open("a")
        return subprocess.Popen(self.command(i, argv), stdout=out, stderr=subprocess.STDOUT, **kw)

    def cut(self, i: int) -> None:
        """Take host `i` off the network (its link down: packets to and from it are lost)."""
        _ip("-n", self.switch, "link", "set", f"cs{i}{self.tag}", "down")

    def mend(self, i: int) -> None:
        _ip("-n", self.switch, "link", "set", f"cs{i}{self.tag}", "up")
