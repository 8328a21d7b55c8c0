"""A recording proxy in front of Alertmanager: the chaos checker's witness of which alert
rows Alertmanager accepted.

Alertmanager keeps alerts in memory and folds the rows of one key into one alert, so its
own API cannot say afterwards whether each row reached it. The proxy forwards every
request and keeps the body of each `POST /api/v2/alerts` that Alertmanager answered with
2xx, one JSON line each, in `accepted.jsonl`. While Alertmanager is away the poster sees
what it would see without the proxy: no answer (502), and it retries.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class AlertRecorder:
    def __init__(self, upstream: str, journal: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.journal = journal
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, body: bytes | None) -> None:
                request = urllib.request.Request(
                    recorder.upstream + self.path,
                    data=body,
                    method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as ex:
                    status, payload = ex.code, ex.read()
                except OSError:
                    status, payload = 502, b"alertmanager does not answer"
                if body is not None and 200 <= status < 300 and self.path == "/api/v2/alerts":
                    recorder.record(body)
                with contextlib.suppress(OSError):  # the poster gave up waiting
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, body: bytes) -> None:
        with self._lock, self.journal.open("ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
