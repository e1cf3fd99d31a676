"""A TCP front for a real registry that can make it look stopped, slow or failing.

Modes: ``pass`` (bytes forwarded both ways), ``slow`` (each connection waits ``delay_s`` before it
is forwarded), ``503`` (an HTTP 503 answered by the front itself), ``down`` (the port is closed:
connections are refused, as when the registry's process is gone).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

_BODY = b'{"error": "maintenance"}'
_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY))


class RegistryFront:
    def __init__(self, upstream_port: int, delay_s: float = 3.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay_s = delay_s
        self.mode = "pass"
        self._listener: socket.socket | None = None
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listen()

    def set(self, mode: str) -> None:
        assert mode in ("pass", "slow", "503", "down"), mode
        if mode == "down":
            self.mode = mode
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone would leave the
                # socket listening until that accept() returned one more connection.
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            return
        self.mode = mode
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.set("down")

    def _listen(self) -> None:
        for _ in range(50):  # the port was ours a moment ago; TIME_WAIT does not block a listener
            try:
                self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port} again")
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        try:
            if mode == "503":
                conn.recv(65536)
                conn.sendall(_503)
                conn.close()
                return
            if mode == "slow":
                time.sleep(self.delay_s)
            upstream = socket.create_connection(self.upstream)
        except OSError:
            conn.close()
            return
        splice(conn, upstream)


def splice(conn: socket.socket, upstream: socket.socket, alive: Callable[[], bool] = lambda: True) -> None:
    """Bytes both ways between two sockets, each way in a thread, until one side closes (or
    ``alive()`` turns false); then both are closed."""
    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while alive() and (data := source.recv(65536)):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    for a, b in ((conn, upstream), (upstream, conn)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
