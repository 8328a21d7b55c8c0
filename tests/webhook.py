"""A webhook receiver that a test serves to a real Alertmanager: it keeps every
notification, as Slack or PagerDuty would get it.

    with Webhook() as hook:                    # http://127.0.0.1:PORT/
        ...                                    # Alertmanager posts to hook.url
        hook.wait_for(lambda seen: ..., "why")
        hook.alerts()                          # [(status, labels, annotations), ...]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

Seen = list[tuple[str, dict[str, str], dict[str, str]]]


class Webhook:
    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> Seen:
        """Every alert of every notification, in the order they came."""
        with self.lock:
            found = list(self.notifications)
        return [(a["status"], a["labels"], a["annotations"]) for n in found for a in n["alerts"]]

    def wait_for(self, condition: Callable[[Seen], bool], what: str, timeout: float = 60) -> Seen:
        deadline = time.monotonic() + timeout
        while not condition(seen := self.alerts()):
            assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s; got {seen}"
            time.sleep(0.2)
        return seen

    def __enter__(self) -> Webhook:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, ex: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
