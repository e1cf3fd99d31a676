"""Rule files, a webhook receiver, event indexing and a request count the rule tests share."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import Urllib3HttpNode
from elasticsearch import Elasticsearch

from rules.model import load_rules
from rules.notify import WebhookTarget

# Errors above 5 in a minute fire after 2 minutes pending; below 2 they resolve. Tests vary
# ``for`` and ``interval`` with str.replace.
THRESHOLD = """
rules:
  - name: many-errors
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    for: 120s
    condition: {op: ">", value: 5}
    recovery: {op: "<", value: 2}
    notify: [hook]
"""


def errors_now(*targets: str) -> str:
    """A rule that fires as soon as one error of the last hour is seen, checked every second,
    notifying ``targets``."""
    return f"""
rules:
  - name: errors-now
    type: threshold
    kinds: [error]
    window: 1h
    interval: 1s
    condition: {{op: ">", value: 0}}
    notify: [{", ".join(targets)}]
"""


T0 = 1_700_000_000.0  # a fixed clock for the cycles (2023), epoch seconds


@dataclass
class Requests:
    """The requests a client made by :meth:`client` sends, as (method, path), counted where they
    leave it (the node), so nothing is patched onto a client after it is built."""

    paths: list[tuple[str, str]] = field(default_factory=list)

    def client(self, url: str, **options: Any) -> Elasticsearch:
        record = self.paths

        class CountingNode(Urllib3HttpNode):
            def perform_request(self, method: str, target: str, *args: Any, **kwargs: Any) -> Any:
                record.append((method, target.split("?", 1)[0]))
                return super().perform_request(method, target, *args, **kwargs)

        return Elasticsearch(url, node_class=CountingNode, **options)

    def searches(self) -> int:
        return sum(1 for _, p in self.paths if p.endswith(("/_search", "/_msearch", "/_count")))


class Receiver(BaseHTTPRequestHandler):
    """A real local HTTP receiver; `up` toggles whether it accepts (503 while down)."""

    received: list[tuple[dict, dict]] = []
    up = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not Receiver.up:
            self.send_response(503)
            self.end_headers()
            return
        Receiver.received.append((json.loads(body), {k.lower(): v for k, v in self.headers.items()} | {"raw": body}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch):
    Receiver.received, Receiver.up = [], True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("REGWATCH_TEST_HOOK_SECRET", "hook-secret")
    yield {"hook": WebhookTarget(url=f"http://127.0.0.1:{server.server_address[1]}/",
                                 secret_env="REGWATCH_TEST_HOOK_SECRET")}
    server.shutdown()


def index_events(es: Elasticsearch, namespace: str, kind: str, ingested: float, count: int,
                 timestamp: float | None = None, **fields) -> None:
    operations = []
    for _ in range(count):
        doc = {"@timestamp": int((timestamp or ingested) * 1000),
               "event": {"ingested": int(ingested * 1000), "action": fields.get("action", "artifact-download"),
                         "outcome": "failure" if kind == "error" else "success"},
               "modelregistry": {"model": {"name": fields.get("model", "m1")}},
               "user": {"name": fields.get("user", "alice")}}
        operations += [{"create": {"_index": f"logs-modelregistry.{kind}-{namespace}"}}, doc]
    es.bulk(operations=operations, refresh=True)


def write_rules(tmp_path: Path, text: str) -> list:
    (tmp_path / "rules.yaml").write_text(text)
    return load_rules(tmp_path)
