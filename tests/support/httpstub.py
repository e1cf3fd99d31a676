"""The answer of a test's local HTTP server: JSON or text, with its length."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


def send(handler: BaseHTTPRequestHandler, status: int, payload: Any, content_type: str = "application/json") -> None:
    import json

    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up (a timeout test): nothing to answer to
        pass
