"""A daemon's ``/metrics``: a registry's Prometheus exposition, served with deadlines.

``prometheus_client.start_http_server`` gives every connection a thread and no timeout: a client
that connects and says nothing holds its thread for ever, and enough of them hold the process's
threads. This server answers from one event loop in one thread: a connection costs a socket and a
few KiB, its request head must arrive within ``timeout_s`` and its answer be taken within
``timeout_s`` again (then it is closed), at most ``max_connections`` are open at once (a
connection beyond is closed at once), and it answers ``GET /metrics`` only.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 8 * 1024


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + body


class MetricsServer:
    """Serves ``registry`` on a bound, listening socket from a daemon thread (made by
    :func:`serve`, which binds first so that a port in use is the caller's :class:`OSError`);
    :meth:`stop` closes the socket and every open connection."""

    def __init__(self, registry: CollectorRegistry, sock: socket.socket, *, timeout_s: float = 10.0,
                 max_connections: int = 100) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._sock = sock
        self._loop = asyncio.new_event_loop()
        self._open: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="metrics-server", daemon=True)
        self._ready = threading.Event()

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one the system chose for port 0)."""
        return self._sock.getsockname()[1]

    def start(self) -> MetricsServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)

    def _shutdown(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._loop.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, sock=self._sock,
                                                                    limit=MAX_HEAD_BYTES))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(self._loop)
            if pending:  # their connections were aborted: each handler ends on its own
                self._loop.run_until_complete(asyncio.wait(pending, timeout=2))
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.max_connections:
            log.warning("metrics_connection_refused", reason="too many connections", limit=self.max_connections)
            writer.transport.abort()
            return
        self._open.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return  # silent, too slow, too long or gone: closed without an answer
            answer = self._answer(head)
            writer.write(answer)
            await asyncio.wait_for(writer.drain(), self.timeout_s)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    def _answer(self, head: bytes) -> bytes:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response("400 Bad Request", b"bad request\n")
        method, target, _ = parts
        if target.split("?", 1)[0] != "/metrics":
            return _response("404 Not Found", b"not found: try /metrics\n")
        if method != "GET":
            return _response("405 Method Not Allowed", b"GET only\n")
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # a collector failed: answer 500, the daemon goes on
            log.error("metrics_collect_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return _response("500 Internal Server Error", b"collect failed\n")
        return _response("200 OK", body, CONTENT_TYPE_PLAIN_0_0_4)  # the text format every Prometheus reads


def serve(registry: CollectorRegistry, port: int, address: str = "127.0.0.1", *, timeout_s: float = 10.0,
          max_connections: int = 100) -> MetricsServer:
    """Bind ``address:port`` and serve ``registry`` from a daemon thread; an OSError (port in
    use, bad address) is the caller's."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.create_server((address, port), family=family, backlog=128)
    return MetricsServer(registry, sock, timeout_s=timeout_s, max_connections=max_connections).start()
