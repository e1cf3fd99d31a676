"""A model registry on 127.0.0.1 for the probe bench: MLflow's answers to the probe's health check
and its transaction (search, latest versions, download URI), always up and always right, so the
bench times the probe and not a registry. The bench's own; the probe tests have theirs, with
faults to choose."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Queue
from urllib.parse import urlsplit

MLFLOW = "/api/2.0/mlflow"
ANSWERS: dict[str, object] = {
    f"{MLFLOW}/registered-models/search": {"registered_models": [{"name": "churn"}]},
    f"{MLFLOW}/registered-models/get-latest-versions": {"model_versions": [{"name": "churn", "version": "3"}]},
    f"{MLFLOW}/model-versions/get-download-uri": {"artifact_uri": "mlflow-artifacts:/1/abc/artifacts/model"},
}


class _Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            status, kind, body = 200, "text/plain", b"OK"
        else:
            answer = ANSWERS.get(path, {"error_code": "ENDPOINT_NOT_FOUND"})
            status, kind, body = 200 if path in ANSWERS else 404, "application/json", json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        """No access log on the bench's output."""


def serve(url_queue: Queue) -> None:
    """Serve until the process ends; the base URL goes into ``url_queue`` first."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    server.daemon_threads = True
    url_queue.put(f"http://127.0.0.1:{server.server_address[1]}")
    server.serve_forever()
