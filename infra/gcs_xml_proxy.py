"""A pass-through HTTP proxy in front of fake-gcs-server for object_store (delta-rs).

object_store talks to GCS's XML API. fake-gcs-server answers an XML-API object PUT
with `400 invalid uploadType` unless the URL looks signed; with a signed-URL query
parameter (`X-Goog-Algorithm=...`) it stores the object. The proxy adds that one
parameter to PUTs and passes every other request through unchanged. It fills three
gaps of the emulator's XML API, where GCS's documented behaviour is plain:
- a listing with `start-after` lists only the keys after it (the emulator lists all;
  delta-rs reads newer log entries that way and fails on older ones);
- a PUT's answer carries the object's `ETag` and `x-goog-generation` headers (the
  emulator sends them in a JSON body; object_store needs the ETag);
- a PUT with `x-goog-if-generation-match: 0` (put-if-absent, which every Delta commit
  relies on so that two writers never both win one log version) fails with 412 when
  the object exists; the emulator ignores that header. The proxy checks and writes
  under one lock, so this holds for every client going through the proxy, and what
  a test on it shows is how our sink handles a refused commit, not GCS's own check.
Set `STORAGE_EMULATOR_XML_HOST` to its URL (see `storage.location.delta_storage_options`).
"""

from __future__ import annotations

import html
import http.client
import json
import logging
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

SIGNED = "X-Goog-Algorithm=GOOG4-RSA-SHA256"
_Answer = tuple[int, list[tuple[str, str]], bytes]
# One proxy serves every client of a test, so a lock makes its put-if-absent atomic.
_PUT_IF_ABSENT = threading.Lock()
_PRECONDITION_FAILED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>PreconditionFailed</Code>"
    b"<Message>At least one of the pre-conditions you specified did not hold.</Message></Error>"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "host"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]

    def _handle(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        answer_headers: list[tuple[str, str]]
        if self.command == "PUT" and headers.get("x-goog-if-generation-match") == "0":
            with _PUT_IF_ABSENT:
                if self._send("HEAD", self.path, None, {})[0] == 200:
                    status, answer_headers, data = 412, [], _PRECONDITION_FAILED
                else:
                    status, answer_headers, data = self._put(body, headers)
        elif self.command == "PUT":
            status, answer_headers, data = self._put(body, headers)
        elif self.command == "GET" and "start-after=" in self.path:
            status, answer_headers, data = self._send(self.command, self.path, body, headers)
            data = _listed_after(data, parse_qs(urlsplit(self.path).query)["start-after"][0])
        else:
            status, answer_headers, data = self._send(self.command, self.path, body, headers)
        self.send_response(status)
        for k, v in answer_headers:
            if k.lower() not in _HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _put(self, body: bytes | None, headers: dict[str, str]) -> _Answer:
        """The emulator's PUT, answered as GCS's XML API does: with the object's ETag and
        generation as headers (the emulator puts them in a JSON body instead)."""
        path = self.path + ("&" if "?" in self.path else "?") + SIGNED
        status, answer_headers, data = self._send("PUT", path, body, headers)
        if status == 200 and data.startswith(b"{"):
            stored = json.loads(data)
            answer_headers = [
                *answer_headers,
                ("ETag", f'"{stored.get("md5Hash") or stored.get("etag")}"'),
                ("x-goog-generation", str(stored.get("generation", ""))),
            ]
            data = b""
        return status, answer_headers, data

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> _Answer:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)


def _listed_after(listing: bytes, start_after: str) -> bytes:
    """An XML listing without the keys at or before `start_after` (the emulator ignores
    that parameter, and delta-rs relies on it to read only newer log entries)."""

    def keep(entry: re.Match[bytes]) -> bytes:
        key = re.search(rb"<Key>(.*?)</Key>", entry.group(0))
        after = key is not None and html.unescape(key.group(1).decode()) > start_after
        return entry.group(0) if after else b""

    return re.sub(rb"<Contents>.*?</Contents>", keep, listing, flags=re.S)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up before its answer (a process killed mid-request, as the
        chaos runs do) is no error of the proxy's: no traceback for it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(upstream_url: str, port: int) -> None:
    """Serve the proxy on 127.0.0.1:`port` until killed. It runs as a process of its own:
    deltalake calls may hold the GIL while they wait for an answer, so a proxy thread
    in the same process would never answer them."""
    target = urlsplit(upstream_url)
    _Forward.upstream = (target.hostname or "127.0.0.1", target.port or 80)
    server = _Server(("127.0.0.1", port), _Forward)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
