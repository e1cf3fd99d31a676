"""An HTTP endpoint that turns signed webhook deliveries into lines of a durable log file.

The design stays log-driven: a delivery is acknowledged (2xx) only after its line is written,
flushed and fsynced, so an acknowledged event is never lost, and the shipper follows that file
like any other. A request is refused, and nothing is written, when it is unsigned or badly signed
(401), stale (401), a delivery id already written (409: the sender stops retrying), too large
(413) or not what the converter accepts (400).

Signatures follow MLflow's scheme: ``X-MLflow-Signature: v1,<base64 HMAC-SHA256>`` over
``<delivery id>.<timestamp>.<body>``, with ``X-MLflow-Timestamp`` and ``X-MLflow-Delivery-Id``.
Delivery ids younger than the tolerance are remembered, and read back from the log at start, so a
retry after a crash between the write and the answer is still recognised.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"

# body, delivery id -> the record to write (raises ValueError when the body is not a delivery)
Converter = Callable[[bytes, str], dict[str, Any]]


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

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
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(self._fd)

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
                 max_body_bytes: int = 1024 * 1024, crash_after_write: Callable[[], bool] | None = None) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self.audit_log = audit_log
        self._secret = secret
        self.convert = convert
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes
        self._crash_after_write = crash_after_write
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._seen_lock = threading.Lock()
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
            record["received_at"] = time.time()
            self.audit_log.append(record)
        except ValueError as exc:
            self._release(delivery)
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)[:500]}
        except OSError as exc:
            self._release(delivery)
            log.error("audit_write_failed", error=str(exc))
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "could not write the audit log"}
        if self._crash_after_write is not None and self._crash_after_write():
            os._exit(3)  # fault injection for tests: written, never answered
        log.info("delivery_written", delivery_id=delivery, entity=record.get("entity"), action=record.get("action"))
        return HTTPStatus.OK, {"status": "written", "delivery_id": delivery}

    def _release(self, delivery: str) -> None:
        with self._seen_lock:
            self._seen.pop(delivery, None)

    def _forget_old(self) -> None:
        cutoff = time.time() - 2 * self.tolerance_s
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)


def make_server(receiver: Receiver, host: str, port: int, path: str = "/mlflow/webhook") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "regwatch-audit-receiver"

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != path:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
                return
            if length < 0 or length > receiver.max_body_bytes:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                self.close_connection = True
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = receiver.handle(headers, body)
            self._answer(status, payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - structlog instead
            log.debug("http", request=self.requestline, detail=format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
