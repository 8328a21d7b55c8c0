"""A TCP gate in front of a real server, which the nemesis shuts and opens again.

    gate = Gate(registry.port)        # clients use gate.port
    gate.refuse()                     # new connections are refused, open ones close:
                                      # the server looks stopped (its state is kept)
    gate.blackhole()                  # bytes stop flowing both ways, connections stay:
                                      # a cut network, where TCP waits and retransmits
    gate.open()

A gate is how a chaos run stops a server whose state lives in memory only (the Schema
Registry: its schema ids must outlive the outage, as a real registry's do) and how it
cuts the link between two processes of a Bytewax cluster.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Gate:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.state = "open"  # "open", "refuse" or "blackhole"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"gate-{self.port}").start()

    def open(self) -> None:
        self.state = "open"

    def blackhole(self) -> None:
        self.state = "blackhole"

    def refuse(self) -> None:
        """Refuse new connections and close the open ones (a stopped server)."""
        self.state = "refuse"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def close(self) -> None:
        self._closed = True
        _close(self.server)
        self.refuse()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.state == "refuse":
                # SO_LINGER 0: the client sees a reset, as from a port nothing listens on
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._carry, args=(client, upstream), daemon=True).start()

    def _carry(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        _close(client)
        _close(upstream)
        with self._lock:
            if (client, upstream) in self._pairs:
                self._pairs.remove((client, upstream))

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Carry bytes one way. An end of stream is passed on as one (a half-close: the
        other way may still be sending, as timely's processes do when a run ends)."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                while self.state == "blackhole":  # hold the bytes, as a cut link does
                    time.sleep(0.05)
                if self.state == "refuse":
                    break
                dst.sendall(data)
        except OSError:
            pass
        _close(src)  # an error or a refusal: both ways end
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
