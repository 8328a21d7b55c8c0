"""`/metrics` (Prometheus) and `/health` (200 or 503) on one port per process.

`CLICKSTREAM_METRICS_PORT` is the port of process 0; a process started with
`python -m bytewax.run ... -i N` serves on that port + N, so the processes of a
cluster on one host do not collide. Unset, nothing listens.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from monitoring.health import HEALTH
from process import process_id
from setting import ConfigError

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATHS = ("/health", "/healthz")
PATHS = (METRICS_PATH, *HEALTH_PATHS)
"""What a process serves (deploy/kubernetes's probes are checked against it)."""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == METRICS_PATH:
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path in HEALTH_PATHS:
            problems = HEALTH.problems()
            body = json.dumps({"status": "unhealthy" if problems else "ok", "problems": problems})
            self._send(503 if problems else 200, "application/json", body.encode())
        else:
            self._send(404, "text/plain", b"/metrics or /health\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not news


def serve(base_port: int, linger_s: float = 0.0, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve `/metrics` and `/health` on `base_port` + this process's id, in a thread.

    `linger_s`: keep serving that long after the dataflow ends, so that the last
    scrape of a bounded run sees its final counts.
    """
    port = base_port + process_id()
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
    except OSError as ex:
        reason = ex.strerror
        raise ConfigError(f"CLICKSTREAM_METRICS_PORT: cannot listen on {port}: {reason}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics, health on /health", host, port)
    if linger_s > 0:

        def linger() -> None:
            log.info("dataflow ended; /metrics stays up for %g s", linger_s)
            time.sleep(linger_s)

        atexit.register(linger)
    return server
