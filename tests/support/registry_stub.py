"""A registry on 127.0.0.1 that can be up, answering 503, slow, or wrong; MLflow's REST paths.

The probe tests need a registry whose failures they choose. Modes: ``up``, ``503``, ``slow``
(answers after ``delay_s``), ``badbody`` (200 without what the check expects).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from support.httpstub import StubHandler, serve
from support.registry_proxy import splice


class StubState:
    def __init__(self) -> None:
        self.mode = "up"
        self.delay_s = 3.0
        self.requests: list[str] = []


def _handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(StubHandler):
        def _answer(self) -> None:
            state.requests.append(self.path)
            if state.mode == "slow":
                time.sleep(state.delay_s)
            if state.mode == "503":
                return self._send(503, {"error": "unavailable"})
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            good = state.mode != "badbody"
            if parts.path == "/health":
                return self._send(200, "OK" if good else "starting", "text/plain")
            if parts.path == "/api/2.0/mlflow/registered-models/search":
                return self._send(200, {"registered_models": [{"name": "churn"}]})
            if parts.path == "/api/2.0/mlflow/registered-models/get-latest-versions":
                return self._send(200, {"model_versions": [{"name": "churn", "version": "3"}]} if good else {})
            if parts.path == "/api/2.0/mlflow/model-versions/get-download-uri":
                if query.get("version") != "3":
                    return self._send(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
                return self._send(200, {"artifact_uri": "mlflow-artifacts:/1/abc/artifacts/model"})
            self._send(404, {"error": self.path})

        do_GET = do_POST = _answer

    return Handler


@contextmanager
def registry_stub() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    with serve(_handler(state)) as url:
        yield url, state


class TcpGate:
    """A TCP forwarder to Elasticsearch that can be closed: an outage without stopping the node."""

    def __init__(self, upstream: str) -> None:
        import socket

        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.open = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                conn.close()
                continue
            splice(conn, upstream, lambda: self.open)

    def close(self) -> None:
        self.listener.close()
