"""The demo: a real MLflow server, driven by the real MLflow client, shipped into Elasticsearch.

``regwatch demo`` starts ``mlflow server`` (gunicorn, proxied artifacts, SQLite) on 127.0.0.1 with
its access log in a work folder, runs a registry workload with ``MlflowClient`` (register models
and versions, aliases, stage transitions, tags, downloads, a few failing calls), writes what it
did to ``truth.jsonl``, then ships the access log with ``regwatch ship --once`` and prints what
Elasticsearch holds per kind. The workload is also the generator of test traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MODELS = ("fraud-detector", "churn-predictor", "recsys-ranker")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(workdir: Path, port: int | None = None, env: dict[str, str] | None = None, gunicorn: bool = True):
    """A real ``mlflow server`` with a gunicorn access log; yields (url, access_log_path)."""
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        raise RuntimeError("mlflow is not installed: pip install 'regwatch[demo]' (make demo does)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    access_log = workdir / "mlflow_access.log"
    server_log = workdir / "mlflow_server.log"
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    command = [
        mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "artifacts"),
        "--workers", "1",
    ]
    if gunicorn:
        command += ["--gunicorn-opts", f"--access-logfile {access_log}"]
    env = dict(os.environ, MLFLOW_TRACKING_URI="", PYTHONUNBUFFERED="1", **(env or {}))
    with server_log.open("ab") as stderr:
        process = subprocess.Popen(command, stdout=stderr, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {server_log}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"mlflow server not healthy after 120 s: see {server_log}")
        yield url, access_log
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def run_workload(tracking_uri: str, truth_path: Path, loads: int = 3) -> list[dict[str, Any]]:
    """What a team does with a registry in a day, through the real client; returns the truth."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import PythonModel

    class Echo(PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return model_input

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    mlflow.set_experiment("regwatch-demo")
    truth: list[dict[str, Any]] = []

    def record(op: str, model: str | None, version: str | None, action: Callable[[], Any]) -> Any:
        entry: dict[str, Any] = {"t": time.time(), "op": op, "model": model, "version": version,
                                 "ok": True, "error_code": None}
        try:
            return action()
        except MlflowException as exc:
            entry.update(ok=False, error_code=exc.error_code)
            return None
        finally:
            truth.append(entry)

    for name in MODELS:
        for _ in range(2):
            with mlflow.start_run():
                record("register_model", name, None, lambda n=name: mlflow.pyfunc.log_model(
                    name="model", python_model=Echo(), registered_model_name=n, pip_requirements=["mlflow"]))
        record("set_alias", name, "2", lambda n=name: client.set_registered_model_alias(n, "champion", "2"))
    for _ in range(loads):
        for name in MODELS:
            record("get_download_uri", name, "1", lambda n=name: client.get_model_version_download_uri(n, "1"))
            record("load_model", name, None, lambda n=name: mlflow.pyfunc.load_model(f"models:/{n}@champion"))
    record("get_model", "no-such-model", None, lambda: client.get_registered_model("no-such-model"))
    record("get_version", MODELS[0], "99", lambda: client.get_model_version(MODELS[0], "99"))
    record("set_version_tag", MODELS[0], "2", lambda: client.set_model_version_tag(MODELS[0], "2", "validated", "yes"))
    record("transition_stage", MODELS[0], "2",
           lambda: client.transition_model_version_stage(MODELS[0], "2", "Production"))
    record("update_model", MODELS[1], None, lambda: client.update_registered_model(MODELS[1], "churn v2"))
    record("search_models", None, None, lambda: client.search_registered_models())
    record("delete_version", MODELS[0], "1", lambda: client.delete_model_version(MODELS[0], "1"))
    record("delete_alias", MODELS[2], None, lambda: client.delete_registered_model_alias(MODELS[2], "champion"))
    record("rename_model", MODELS[2], None, lambda: client.rename_registered_model(MODELS[2], MODELS[2] + "-v2"))
    truth_path.write_text("".join(json.dumps(t) + "\n" for t in truth))
    return truth


def indexed_summary(client, namespace: str) -> tuple[str, dict[str, int], dict[str, int]]:
    """What the demo's namespace holds: (pattern, documents per kind, retrievals of the top models)."""
    from parsers import streams

    pattern = streams.pattern(namespace)
    client.indices.refresh(index=pattern)
    response = client.search(index=pattern, size=0, aggs={
        "kinds": {"terms": {"field": "data_stream.dataset", "size": 10}},
        "models": {"filter": {"term": {"data_stream.dataset": streams.dataset("retrieval")}},
                   "aggs": {"top": {"terms": {"field": "modelregistry.model.name", "size": 5}}}},
    })
    kinds = {streams.kind_of_dataset(b["key"]): b["doc_count"] for b in response["aggregations"]["kinds"]["buckets"]}
    top = {b["key"]: b["doc_count"] for b in response["aggregations"]["models"]["top"]["buckets"]}
    return pattern, kinds, top
