"""HTTP servers on 127.0.0.1 that misbehave the way a degraded registry (or an attacker) does.

Each is a raw socket server in threads, so it can do what a well-behaved HTTP library never would:

* ``drip_body``: the headers at once, then the body one byte every ``pace_s``, forever;
* ``drip_headers``: the status line, then the headers one byte every ``pace_s``, forever;
* ``endless``: a chunked body that never ends, sent as fast as the client reads;
* ``silent``: accepts the connection, reads the request, never answers;
* ``echo``: a 401 whose body repeats the request's headers (a server quoting a secret back);
* ``ok``: a well-behaved ``200 OK`` (to see the request a check sent);
* ``gzip_bomb``: ``Content-Encoding: gzip``, whatever was asked: 256 KiB that unpack to 256 MiB.

``server.connections`` counts accepted connections, ``server.open_now``/``peak_open`` how many
were open at once, ``server.sent`` the bytes sent, ``server.requests`` the raw request heads.
``hostile_server(mode)`` stops the server and closes every connection when the block ends.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("drip_body", "drip_headers", "endless", "silent", "echo", "echo_token", "ok", "gzip_bomb")


@functools.cache
def gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join([*(packer.compress(block) for _ in range(256)), packer.flush()])


class HostileServer:
    def __init__(self, mode: str, pace_s: float = 0.2, chunk_bytes: int = 64 * 1024, chunk_pace_s: float = 0.0,
                 lifetime_s: float = 120.0) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self.pace_s = pace_s
        self.chunk_bytes = chunk_bytes
        self.chunk_pace_s = chunk_pace_s  # endless: the pause between chunks (0: a flood)
        self.lifetime_s = lifetime_s  # every connection is dropped after this, whatever happens
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.connections = 0
        self.open_now = 0
        self.peak_open = 0
        self.sent = 0
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._accept, name=f"hostile-{mode}", daemon=True)

    def start(self) -> HostileServer:
        self.thread.start()
        return self

    def _accept(self) -> None:
        self.listener.settimeout(0.1)  # a blocked accept() would not notice the listener closed
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.sockets.append(conn)
                self.connections += 1
                self.open_now += 1
                self.peak_open = max(self.peak_open, self.open_now)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self.lock:
            self.sent += len(data)

    def _read_head(self, conn: socket.socket) -> bytes:
        conn.settimeout(self.lifetime_s)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = conn.recv(4096)
            if not data:
                break
            head += data
        with self.lock:
            self.requests.append(head)
        return head

    def _serve(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.lifetime_s
        try:
            head = self._read_head(conn)
            if self.mode == "silent":
                conn.settimeout(0.1)
                while not self.stopped.is_set() and time.monotonic() < end:
                    try:
                        if not conn.recv(4096):  # the client closed: the connection is over
                            break
                    except TimeoutError:
                        continue
            elif self.mode == "gzip_bomb":
                body = gzip_bomb()
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
                           b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            elif self.mode == "ok":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                           b"Connection: close\r\n\r\nOK")
            elif self.mode == "echo":
                body = head.split(b"\r\n\r\n")[0]
                self._send(conn, b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            elif self.mode == "echo_token":  # the credential alone, without its scheme word
                words = next((line.split() for line in head.split(b"\r\n")
                              if line.lower().startswith(b"authorization:")), [b""])
                body = b"bad token: " + words[-1]
                self._send(conn, b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            elif self.mode == "drip_body":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n")
                while not self.stopped.wait(self.pace_s) and time.monotonic() < end:
                    self._send(conn, b"O")
            elif self.mode == "drip_headers":
                self._send(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self.stopped.wait(self.pace_s) and time.monotonic() < end:
                    self._send(conn, b"a")
            elif self.mode == "endless":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = f"{self.chunk_bytes:x}\r\n".encode() + b"O" * self.chunk_bytes + b"\r\n"
                while not self.stopped.is_set() and time.monotonic() < end:
                    self._send(conn, chunk)
                    if self.chunk_pace_s:
                        self.stopped.wait(self.chunk_pace_s)
        except OSError:  # the client gave up: what the test wants
            pass
        finally:
            with self.lock:
                self.open_now -= 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.listener.close()
        with self.lock:
            sockets = list(self.sockets)
        for conn in sockets:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@contextmanager
def hostile_server(mode: str, **options: float) -> Iterator[HostileServer]:
    server = HostileServer(mode, **options).start()
    try:
        yield server
    finally:
        server.close()
