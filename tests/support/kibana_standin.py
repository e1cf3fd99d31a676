"""A stand-in for Kibana's saved-objects import and export APIs, holding objects to Kibana's rules.

Kibana cannot run here. This answers ``POST [/s/<space>]/api/saved_objects/_import`` and
``_export`` in their documented shapes, and refuses what Kibana would refuse, by the rules of
``support.kibana_checker``: a broken ``fatal`` rule (a migration that would throw, a duplicate
object) fails the whole import as Kibana's bulk create does (HTTP 500, nothing saved); any other
broken rule fails that object (``success: false``, the object in ``errors``), the rest are saved.
An export gives the stored objects with the fields Kibana adds (``created_at``, ``updated_at``,
``version``) and the summary line.
"""

from __future__ import annotations

import base64
import email.parser
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.httpstub import StubHandler, serve
from support.kibana_checker import check

SERVER_FIELDS = ("created_at", "updated_at", "version")


class KibanaState:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str, str], dict[str, Any]] = {}  # (space, type, id)
        self.headers: list[dict[str, str]] = []
        self.writes = 0
        self.lock = threading.Lock()

    def import_objects(self, space: str, objects: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        problems = check(objects)
        fatal = [p for p in problems if p.fatal]
        if fatal:
            return 500, {"statusCode": 500, "error": "Internal Server Error", "message": str(fatal[0])}
        failed = {(p.type, p.id): p for p in problems}
        results, errors = [], []
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.lock:
            for obj in objects:
                key = (space, obj["type"], obj["id"])
                problem = failed.get((obj["type"], obj["id"]))
                if problem is not None:
                    errors.append({"id": obj["id"], "type": obj["type"], "meta": {},
                                   "error": {"type": "missing_references" if problem.rule == "references-exist"
                                             else "unknown", "message": str(problem)}})
                    continue
                existing = self.stored.get(key)
                self.writes += 1
                stored = {k: v for k, v in obj.items() if k not in SERVER_FIELDS}
                stored["created_at"] = existing["created_at"] if existing else now
                stored["updated_at"] = now
                stored["version"] = base64.b64encode(json.dumps([self.writes, 1]).encode()).decode()
                self.stored[key] = stored
                results.append({"type": obj["type"], "id": obj["id"], "meta": {},
                                **({"overwrite": True} if existing else {})})
        body: dict[str, Any] = {"success": not errors, "successCount": len(results), "successResults": results}
        if errors:
            body["errors"] = errors
        return 200, body

    def export_objects(self, space: str, wanted: list[dict[str, str]], deep: bool) -> str:
        keys: list[tuple[str, str]] = []
        pending = [(o["type"], o["id"]) for o in wanted]
        while pending:
            key = pending.pop(0)
            if key in keys or (space, *key) not in self.stored:
                continue
            keys.append(key)
            if deep:
                pending += [(r["type"], r["id"]) for r in self.stored[(space, *key)]["references"]]
        lines = [json.dumps(self.stored[(space, *key)]) for key in keys]
        return "\n".join(lines + [json.dumps({"exportedCount": len(lines), "missingRefCount": 0,
                                              "missingReferences": []})])


def _handler(state: KibanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(StubHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.headers.get("kbn-xsrf") is None:
                return self._send(400, {"error": "missing kbn-xsrf"})
            path, _, query = self.path.partition("?")
            space = "default"
            if path.startswith("/s/"):
                _, _, space, path = path.split("/", 3)
                path = "/" + path
            if path == "/api/saved_objects/_import" and "overwrite=true" in query:
                message = email.parser.BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                (part,) = message.get_payload()
                objects = [json.loads(line) for line in part.get_payload(decode=True).decode().splitlines() if line]
                return self._send(*state.import_objects(space, objects))
            if path == "/api/saved_objects/_export":
                request = json.loads(body)
                text = state.export_objects(space, request["objects"], bool(request.get("includeReferencesDeep")))
                return self._send(200, text, "application/ndjson")
            self._send(404, {"error": self.path})

    return Handler


@contextmanager
def kibana_standin() -> Iterator[tuple[str, KibanaState]]:
    state = KibanaState()
    with serve(_handler(state)) as url:
        yield url, state
