"""The demo's notification target: a webhook receiver that appends what it gets to a file.

It stands where Slack or PagerDuty would: every POST body is written as one JSON line with the
time it arrived and its idempotency key, then answered 200. A body must say its length
(``Content-Length``: absent 411, not a non-negative number 400, over ``MAX_BODY`` 413, each refused
before a byte is read), and a client that stops sending is cut off after ``timeout_s``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20
TIMEOUT_S = 10.0


def body_length(value: str | None) -> int | tuple[int, str]:
    """The body's length from its ``Content-Length``, or the (status, reason) refusing it."""
    if value is None:
        return 411, "Content-Length required"
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return 400, "Content-Length is not a non-negative number"
    if len(text) > 12 or int(text) > MAX_BODY:
        return 413, f"body over {MAX_BODY} bytes"
    return int(text)


def serve(host: str, port: int, out: Path, timeout_s: float = TIMEOUT_S) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever``) appending to ``out``."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # per socket operation: a silent or stalled client is cut off

        def do_POST(self) -> None:
            length = body_length(self.headers.get("Content-Length"))
            if isinstance(length, tuple):
                self.close_connection = True
                self.send_error(*length)
                return
            body = self.rfile.read(length)
            if len(body) < length:  # the client went away mid-body
                return
            try:
                payload: Any = json.loads(body)
            except ValueError:
                payload = {"unparsed": body.decode("utf-8", "replace")}
            record = {"received": time.time(), "path": self.path,
                      "key": self.headers.get("X-Regwatch-Idempotency-Key"), "payload": payload}
            with lock, out.open("a", encoding="utf-8") as file:
                file.write(json.dumps(record, sort_keys=True) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the file is the record
            return

    out.parent.mkdir(parents=True, exist_ok=True)
    return ThreadingHTTPServer((host, port), Handler)


def received(out: Path) -> list[dict[str, Any]]:
    return read_json_lines(out)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file of the demo's (notifications, the workload's truth); none yet is empty."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
