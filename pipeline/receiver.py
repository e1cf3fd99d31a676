"""An HTTP endpoint that turns signed webhook deliveries into lines of a durable log file.

The design stays log-driven: a delivery is acknowledged (2xx) only after its line is written,
flushed and fsynced, so an acknowledged event is never lost, and the shipper follows that file
like any other. A request is refused, and nothing is written, when it is unsigned or badly signed
(401), stale (401), a delivery id already written (409: the sender stops retrying), too large
(413) or not what the converter accepts (400). The sender's test delivery (the converter returns
no record for it) is verified like any other, answered 200 and counted, and not written: it is
no registry event.

Signatures follow MLflow's scheme: ``X-MLflow-Signature: v1,<base64 HMAC-SHA256>`` over
``<delivery id>.<timestamp>.<body>``, with ``X-MLflow-Timestamp`` and ``X-MLflow-Delivery-Id``.
Delivery ids younger than the tolerance are remembered, and read back from the log at start, so a
retry after a crash between the write and the answer is still recognised.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"

# body, delivery id -> the record to write, or None for the sender's test delivery (verified and
# answered, nothing written); raises ValueError when the body is not a delivery
Converter = Callable[[bytes, str], dict[str, Any] | None]


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class AuditLog:
    """Appends one line per record; fsync before returning; reopens when the file is moved."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = -1
        self._open()

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        if not existed:  # the new file's name must survive a crash too, not only its lines
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def reopen(self) -> None:
        with self._lock:
            self._open()

    def _moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        own = os.fstat(self._fd)
        return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        with self._lock:
            if self._moved():  # rotated away by rename: write to a new file at the path
                self._open()
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(self._fd)
            except OSError:
                # A disk full mid-line: take the fragment back, or the next line would be glued to it.
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    log.error("audit_fragment_left", path=str(self.path), offset=start)
                raise

    def recent_delivery_ids(self, since: float) -> list[str]:
        """Delivery ids of the lines received after ``since`` (epoch), from this file and its rotations."""
        ids: list[str] = []
        for path in sorted(self.path.parent.glob(self.path.name + "*")):
            try:
                if path.stat().st_mtime < since:
                    continue
                for raw in path.read_bytes().splitlines():
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("received_at", 0) >= since:
                        if delivery := record.get("delivery_id"):
                            ids.append(delivery)
            except OSError:
                continue
        return ids

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class Receiver:
    def __init__(self, audit_log: AuditLog, secret: str, convert: Converter, *, tolerance_s: float = 300.0,
                 max_body_bytes: int = 1024 * 1024, after_write: Callable[[str], None] | None = None) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self.audit_log = audit_log
        self._secret = secret
        self.convert = convert
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes
        self._after_write = after_write  # called with the delivery id once its line is on disk
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._seen_lock = threading.Lock()
        self.test_deliveries = 0  # the sender's test deliveries answered since start (GET /health)
        now = time.time()
        for delivery in audit_log.recent_delivery_ids(now - 2 * tolerance_s):
            self._seen[delivery] = now

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        delivery = headers.get(DELIVERY_HEADER.lower(), "")
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        if not (delivery and timestamp and signature):
            return HTTPStatus.UNAUTHORIZED, {"error": "unsigned delivery"}
        if not hmac.compare_digest(signature.encode(), sign(self._secret, delivery, timestamp, body).encode()):
            return HTTPStatus.UNAUTHORIZED, {"error": "bad signature"}
        try:
            sent_at = int(timestamp)
        except ValueError:
            return HTTPStatus.UNAUTHORIZED, {"error": "bad timestamp"}
        if abs(time.time() - sent_at) > self.tolerance_s:
            return HTTPStatus.UNAUTHORIZED, {"error": "stale timestamp"}
        with self._seen_lock:
            self._forget_old()
            if delivery in self._seen:
                log.info("delivery_duplicate", delivery_id=delivery)
                return HTTPStatus.CONFLICT, {"error": "delivery already received", "delivery_id": delivery}
            self._seen[delivery] = time.time()  # claimed: a concurrent retry is refused too
        try:
            record = self.convert(body, delivery)
            if record is None:
                with self._seen_lock:
                    self.test_deliveries += 1
                log.info("test_delivery_received", delivery_id=delivery, written=False)
                return HTTPStatus.OK, {"status": "test delivery received, not written", "delivery_id": delivery}
            record["received_at"] = time.time()
            self.audit_log.append(record)
        except ValueError as exc:
            self._release(delivery)
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)[:500]}
        except OSError as exc:
            self._release(delivery)
            log.error("audit_write_failed", error=str(exc))
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "could not write the audit log"}
        if self._after_write is not None:
            self._after_write(delivery)
        log.info("delivery_written", delivery_id=delivery, entity=record.get("entity"), action=record.get("action"))
        return HTTPStatus.OK, {"status": "written", "delivery_id": delivery}

    def _release(self, delivery: str) -> None:
        with self._seen_lock:
            self._seen.pop(delivery, None)

    def _forget_old(self) -> None:
        cutoff = time.time() - 2 * self.tolerance_s
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for a request's head: uvicorn times out idle
    keep-alive connections, but not one that connects and then sends nothing, or trickles its
    headers (slowloris). Bodies have their deadline in the application."""

    head_timeout_s = 10.0
    max_open = 512  # connections open at once, idle or not: a bound on file descriptors only

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)
        if len(self.connections) > self.max_open:
            log.info("connection_refused", client=self.client[0] if self.client else None, reason="too many open")
            self.transport.close()

    def _head_too_slow(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            log.info("connection_timed_out", client=self.client[0] if self.client else None, stage="request head")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)


class WebhookApp:
    """The ASGI application: ``POST <path>`` (a delivery), ``GET /health``.

    The body is read within ``body_timeout_s`` and never beyond ``max_body_bytes``; the blocking
    write-and-fsync runs in a worker thread so that slow disks do not stall other connections.
    At most ``max_requests`` requests are under way at once (503 beyond). Only requests count: an
    idle connection, kept alive or still to send its head, holds no place (uvicorn's own
    ``limit_concurrency`` counts connections, so 100 idle clients held every delivery at 503).
    """

    def __init__(self, receiver: Receiver, path: str = "/mlflow/webhook", body_timeout_s: float = 10.0,
                 max_requests: int = 100) -> None:
        self.receiver = receiver
        self.path = path
        self.body_timeout_s = body_timeout_s
        self.max_requests = max_requests
        self._under_way = [0]  # requests in the application now (one event loop: no lock)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        if self._under_way[0] >= self.max_requests:
            await _answer(send, HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many requests at once"},
                          [(b"retry-after", b"1")])
            return
        self._under_way[0] += 1
        try:
            await self._request(scope, receive, send)
        finally:
            self._under_way[0] -= 1

    async def _request(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/health":
            await _answer(send, HTTPStatus.OK, {"status": "ok", "test_deliveries": self.receiver.test_deliveries})
            return
        if path != self.path:
            await _answer(send, HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        if method != "POST":
            await _answer(send, HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST only"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            length = int(headers.get("content-length", ""))
        except ValueError:
            await _answer(send, HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if length < 0 or length > self.receiver.max_body_bytes:
            await _answer(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        try:
            body = await asyncio.wait_for(_read_body(receive, length), self.body_timeout_s)
        except TimeoutError:
            log.info("delivery_timed_out", client=_client(scope), stage="body")
            await _answer(send, HTTPStatus.REQUEST_TIMEOUT, {"error": "body not received in time"})
            return
        except ValueError as exc:
            await _answer(send, HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        status, payload = await asyncio.to_thread(self.receiver.handle, headers, body)
        if status == HTTPStatus.UNAUTHORIZED:  # who was refused and why; never the secret or signature
            log.warning("delivery_refused", reason=payload.get("error"), client=_client(scope),
                        delivery_id=headers.get(DELIVERY_HEADER.lower(), "")[:100])
        await _answer(send, status, payload)


def _client(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


async def _read_body(receive: Callable, length: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValueError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > length:
            raise ValueError("body longer than its Content-Length")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Callable, status: int, payload: dict[str, Any],
                  extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a port in use is an OSError the caller can report in
    one line (uvicorn would log it and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(receiver: Receiver, host: str, port: int, path: str = "/mlflow/webhook", *,
                max_connections: int = 100, head_timeout_s: float = 10.0, body_timeout_s: float = 10.0,
                max_open_connections: int = 512, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the receiver: at most ``max_connections`` requests under way at once
    (503 beyond; idle connections do not count), at most ``max_open_connections`` connections open
    (closed at once beyond), a deadline for each request's head and body, idle keep-alive
    connections closed."""
    protocol = type("Protocol", (_Protocol,), {"head_timeout_s": head_timeout_s, "max_open": max_open_connections})
    config = uvicorn.Config(WebhookApp(receiver, path, body_timeout_s, max_connections), host=host, port=port,
                            http=protocol, lifespan="off", access_log=False, log_config=None, log_level=log_level,
                            limit_concurrency=None, timeout_keep_alive=5, server_header=False,
                            h11_max_incomplete_event_size=16 * 1024)
    return uvicorn.Server(config)
