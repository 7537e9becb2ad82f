"""A TCP proxy between the upload client and a server: slows the upload down so a test can
act mid-transfer, counts the bytes it carries, and drops the network on demand."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

PIECE = 16 * 1024


class Proxy:
    """Listens on a free loopback port and forwards every connection to `target_port`.

    `rate` caps the client-to-server bytes per second of each connection. `drop()` cuts
    every open connection, as a lost network does; while `refusing` is set, new
    connections are closed as soon as they are accepted. `target_port` may change (a
    restarted server) between connections.
    """

    def __init__(self, target_port: int, rate: float | None = None) -> None:
        self.target_port = target_port
        self.rate = rate
        self.refusing = False
        self.upstream_bytes = 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        started = time.monotonic()
        sent = 0
        try:
            while True:
                data = source.recv(PIECE)
                if not data:
                    break
                if upstream:
                    with self._lock:
                        self.upstream_bytes += len(data)
                    sent += len(data)
                    if self.rate:
                        ahead = sent / self.rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        # shutdown() wakes the other pump's blocked recv(); close() alone would not.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def drop(self) -> None:
        """Cut every open connection in both directions."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop()
        self._thread.join(5)


@contextlib.contextmanager
def proxy_to(target_port: int, rate: float | None = None) -> Iterator[Proxy]:
    proxy = Proxy(target_port, rate)
    try:
        yield proxy
    finally:
        proxy.close()
