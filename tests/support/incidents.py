"""Local receivers for PagerDuty's Events API v2 and Opsgenie's Alert API, holding notifications
to the documented request shapes (and refusing others, as the services do), and keeping incidents
the way the services do: one per dedup key / alias while open.

PagerDuty: https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-event-to-pager-duty
(``POST /v2/enqueue``: ``routing_key`` of 32 characters, ``event_action`` trigger | acknowledge |
resolve, ``dedup_key`` up to 255, a trigger's ``payload`` with ``summary`` up to 1024, ``source``
and ``severity`` critical | error | warning | info; 202 with ``dedup_key``, 400 otherwise).
Opsgenie: https://docs.opsgenie.com/docs/alert-api (``POST /v2/alerts`` with ``message`` up to 130
characters, ``alias`` up to 512, ``priority`` P1..P5, string ``details``; ``POST
/v2/alerts/{id}/close?identifierType=alias``; ``Authorization: GenieKey <key>``; 202).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Incident:
    key: str
    status: str = "triggered"  # triggered | resolved (PagerDuty); open | closed (Opsgenie)
    count: int = 1
    first: dict[str, Any] = field(default_factory=dict)


class _Service:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.refused: list[str] = []
        self.incidents: list[Incident] = []
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def open(self, key: str) -> Incident | None:
        return next((i for i in self.incidents if i.key == key and i.status in ("triggered", "open")), None)

    def handle(self, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlsplit(self.path)
                try:
                    body = json.loads(raw)
                    if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                        raise ValueError("Content-Type is not application/json")
                except ValueError as exc:
                    status, answer = 400, {"message": f"invalid JSON: {exc}"}
                else:
                    with service.lock:
                        status, answer = service.handle(parts.path, parse_qs(parts.query),
                                                        {k.lower(): v for k, v in self.headers.items()}, body)
                        if status >= 400:
                            service.refused.append(json.dumps(answer))
                        else:
                            service.requests.append((parts.path, body))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()


class PagerDuty(_Service):
    def __init__(self, routing_key: str) -> None:
        self.routing_key = routing_key
        super().__init__()

    def handle(self, path, query, headers, body):
        errors = []
        if path != "/v2/enqueue":
            return 404, {"status": "invalid", "message": "not found"}
        if body.get("routing_key") != self.routing_key or len(body.get("routing_key", "")) != 32:
            errors.append("routing_key is invalid")
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("event_action is invalid")
        key = body.get("dedup_key")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            errors.append("dedup_key is invalid")
        if action in ("acknowledge", "resolve") and not key:
            errors.append("dedup_key is required for acknowledge and resolve")
        if action == "trigger":
            payload = body.get("payload") or {}
            if not isinstance(payload.get("summary"), str) or not payload["summary"] or len(payload["summary"]) > 1024:
                errors.append("payload.summary is invalid")
            if not payload.get("source"):
                errors.append("payload.source is required")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("payload.severity is invalid")
            for link in body.get("links", []):
                if not isinstance(link, dict) or not str(link.get("href", "")).startswith(("http://", "https://")):
                    errors.append("links is invalid")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        key = key or f"generated-{len(self.requests)}"
        incident = self.open(key)
        if action == "trigger":
            if incident is None:
                self.incidents.append(Incident(key, first=body))
            else:
                incident.count += 1  # de-duplicated into the open incident
        elif action == "resolve" and incident is not None:
            incident.status = "resolved"
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}


class Opsgenie(_Service):
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        super().__init__()

    def handle(self, path, query, headers, body):
        if headers.get("authorization") != f"GenieKey {self.api_key}":
            return 401, {"message": "Could not authenticate", "took": 0.0, "requestId": "x"}
        if path == "/v2/alerts":
            errors = []
            message = body.get("message")
            if not isinstance(message, str) or not message.strip() or len(message) > 130:
                errors.append("message")
            if len(str(body.get("alias", ""))) > 512:
                errors.append("alias")
            if body.get("priority", "P3") not in ("P1", "P2", "P3", "P4", "P5"):
                errors.append("priority")
            if not all(isinstance(v, str) for v in (body.get("details") or {}).values()):
                errors.append("details")
            if len(str(body.get("description", ""))) > 15000:
                errors.append("description")
            if errors:
                return 422, {"message": "Request body is not processable", "errors": errors}
            alias = body.get("alias") or body["message"]
            incident = self.open(alias)
            if incident is None:
                self.incidents.append(Incident(alias, status="open", first=body))
            else:
                incident.count += 1
            return 202, {"result": "Request will be processed", "took": 0.01, "requestId": "r"}
        parts = path.split("/")
        if len(parts) == 5 and parts[1:3] == ["v2", "alerts"] and parts[4] == "close":
            if query.get("identifierType") != ["alias"]:
                return 422, {"message": "identifierType must be alias here"}
            incident = self.open(unquote(parts[3]))
            if incident is not None:
                incident.status = "closed"
            return 202, {"result": "Request will be processed", "took": 0.01, "requestId": "r"}
        return 404, {"message": "not found"}
