"""A TCP link in front of a real server that a test cuts for the requests it chooses: the
server stays up and keeps its state, and the client sees what it sees when the server is
away (the connection closes with no answer).

    with Link(registry.port, cut=b"/schemas/ids/") as link:   # schema lookups fail
        ...                                                    # other requests pass
        link.mend()                                            # now they all pass

It looks at the first request of each connection only, so a client that keeps its
connection alive after one that passed is not cut: the tests cut before a client asks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Link:
    def __init__(self, upstream_port: int, cut: bytes | None = None) -> None:
        self.upstream_port = upstream_port
        self.cut = cut
        self.refused = 0  # connections closed for a cut request
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def mend(self) -> None:
        self.cut = None

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    break
                head += chunk
        if self.cut is not None and self.cut in head.split(b"\r\n", 1)[0]:
            self.refused += 1
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        upstream.sendall(head)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self.closed = True
        self.server.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, ex: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    for s in (source, sink):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
