"""The audit receiver against a real MLflow server and the real MLflow client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipeline.receiver import sign
from regwatch.demo import free_port, mlflow_server
from support.shipping import wait_for

pytestmark = pytest.mark.slow
REGWATCH = [sys.executable, "-m", "regwatch.cli"]
SECRET = "s3cr3t-" + uuid.uuid4().hex
MLFLOW_ENV = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
              "MLFLOW_WEBHOOK_CACHE_TTL": "1"}


class SupervisedReceiver:
    """`regwatch audit-receiver` as a process, restarted at once whenever it dies."""

    def __init__(self, log: Path, port: int, crash_marker: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.log, self.port = log, port
        self.env = {**os.environ, "REGWATCH_WEBHOOK_SECRET": SECRET, **(extra_env or {})}
        self.command = [*REGWATCH, "audit-receiver", "--log", str(log), "--listen", f"127.0.0.1:{port}"]
        if crash_marker is not None:
            self.command = [sys.executable, str(Path(__file__).parent / "support" / "crashing_receiver.py"), str(log),
                            str(port), str(crash_marker)]
            self.env["PYTHONPATH"] = str(Path(__file__).parent.parent)
        self.starts = 0
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _spawn(self) -> None:
        with open(self.log.with_name(self.log.name + ".receiver-stderr"), "ab") as stderr:
            self._process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr)
        self.starts += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._process is None or self._process.poll() is not None:
                self._spawn()
            time.sleep(0.05)

    def __enter__(self) -> SupervisedReceiver:
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("receiver not healthy")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{url}/mlflow/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []





def run_register(mlflow_url: str, receiver_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REGWATCH, "audit-receiver", "register", "--mlflow", mlflow_url, "--url", receiver_url],
                          env={**os.environ, "REGWATCH_WEBHOOK_SECRET": SECRET}, capture_output=True, text=True,
                          timeout=180)


def register(mlflow_url: str, receiver_url: str) -> None:
    result = run_register(mlflow_url, receiver_url)
    assert result.returncode == 0, result.stderr
    assert "test delivery answered 200" in result.stderr


def ship_audit(log: Path, es_url: str, namespace: str, tmp_path: Path) -> str:
    config = tmp_path / "ship.yaml"
    config.write_text(json.dumps({
        "elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "metrics_port": None,
        "checkpoint_file": str(tmp_path / "checkpoints.json"),
        "inputs": [{"paths": [str(log)], "format": "audit"}]}))
    return subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                          check=True).stdout


def test_every_registry_write_is_one_audit_line_and_one_event(es: Elasticsearch, es_url: str, namespace: str,
                                                               tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.pyfunc import PythonModel

    class Echo(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    log = tmp_path / "audit.log"
    with SupervisedReceiver(log, free_port()) as receiver, \
            mlflow_server(tmp_path / "mlflow", env=MLFLOW_ENV, gunicorn=False) as (mlflow_url, _):
        register(mlflow_url, receiver.url)
        client = MlflowClient(mlflow_url)
        mlflow.set_tracking_uri(mlflow_url)
        name = "audited-" + uuid.uuid4().hex[:6]
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name=name,
                                    pip_requirements=["mlflow"])
        client.set_registered_model_alias(name, "champion", "1")
        client.set_model_version_tag(name, "1", "validated", "yes")
        client.delete_model_version_tag(name, "1", "validated")
        client.delete_registered_model_alias(name, "champion")
        client.delete_model_version(name, "1")  # MLflow defines no webhook event for this
        expected = Counter({("registered_model", "created"): 1, ("model_version", "created"): 1,
                            ("model_version_alias", "created"): 1, ("model_version_tag", "set"): 1,
                            ("model_version_tag", "deleted"): 1, ("model_version_alias", "deleted"): 1})

        def ours() -> Counter:
            return Counter((r["entity"], r["action"]) for r in records(log) if r["model"].get("name") == name)

        wait_for(lambda: ours() == expected)
        time.sleep(2.0)  # nothing more arrives late
        assert ours() == expected
    mine = [r for r in records(log) if r["model"].get("name") == name]
    assert len({r["delivery_id"] for r in mine}) == len(mine) == 6
    summary = ship_audit(log, es_url, namespace, tmp_path)
    assert "deadletters=0" in summary
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    hits = es.search(index=f"logs-modelregistry.*-{namespace}", size=50,
                     query={"term": {"modelregistry.model.name": name}})["hits"]["hits"]
    actions = Counter(h["_source"]["event"]["action"] for h in hits)
    assert actions == Counter({"registered-model-create": 1, "model-version-create": 1,
                               "registered-model-alias-set": 1, "model-version-set-tag": 1,
                               "model-version-delete-tag": 1, "registered-model-alias-delete": 1})
    versions = {h["_source"]["event"]["action"]: h["_source"]["modelregistry"]["model"].get("version") for h in hits}
    assert versions["model-version-create"] == "1" and versions["registered-model-alias-set"] == "1"
    assert all(h["_source"]["modelregistry"]["audit"]["delivery_id"] for h in hits)


def test_forged_replayed_and_stale_deliveries_are_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    body = json.dumps({"entity": "registered_model", "action": "created", "timestamp": "2026-11-25T20:00:00+00:00",
                       "data": {"name": "m"}}).encode()
    marker = tmp_path / "crash-marker"
    # The old test-only crash hook, set in the environment: the production command must ignore it.
    with SupervisedReceiver(log, free_port(), extra_env={"REGWATCH_RECEIVER_CRASH_ONCE": str(marker)}) as receiver:
        now = str(int(time.time()))
        good = {"X-MLflow-Delivery-Id": "d-1", "X-MLflow-Timestamp": now,
                "X-MLflow-Signature": sign(SECRET, "d-1", now, body), "Content-Type": "application/json"}
        assert post(receiver.url, body, good) == 200
        assert not marker.exists() and receiver.starts == 1
        size = log.stat().st_size
        forged = {**good, "X-MLflow-Delivery-Id": "d-2", "X-MLflow-Signature": sign("wrong", "d-2", now, body)}
        assert post(receiver.url, body, forged) == 401
        unsigned = {k: v for k, v in good.items() if k != "X-MLflow-Signature"} | {"X-MLflow-Delivery-Id": "d-3"}
        assert post(receiver.url, body, unsigned) == 401
        assert post(receiver.url, body, good) == 409  # replayed delivery id
        old = str(int(time.time()) - 3600)
        stale = {**good, "X-MLflow-Delivery-Id": "d-4", "X-MLflow-Timestamp": old,
                 "X-MLflow-Signature": sign(SECRET, "d-4", old, body)}
        assert post(receiver.url, body, stale) == 401
        tampered = body.replace(b'"m"', b'"x"')
        assert post(receiver.url, tampered, good) == 401
        assert log.stat().st_size == size
        (record,) = records(log)
        assert record["delivery_id"] == "d-1" and record["model"] == {"name": "m"}


def test_receiver_killed_between_write_and_answer_gives_one_event(es: Elasticsearch, es_url: str, namespace: str,
                                                                   tmp_path: Path) -> None:
    from mlflow import MlflowClient

    log = tmp_path / "audit.log"
    marker = tmp_path / "crashed"
    with mlflow_server(tmp_path / "mlflow", env=MLFLOW_ENV, gunicorn=False) as (mlflow_url, _):
        with SupervisedReceiver(log, free_port()) as receiver:
            register(mlflow_url, receiver.url)
        # The same port, now with a receiver that dies once right after writing (before answering).
        with SupervisedReceiver(log, receiver.port, crash_marker=marker) as crashing:
            name = "crashy-" + uuid.uuid4().hex[:6]
            MlflowClient(mlflow_url).create_registered_model(name)
            wait_for(lambda: marker.exists(), timeout=30)
            # MLflow's retries (1 s, 2 s, 4 s backoff) reach the restarted receiver, which answers
            # the delivery it already wrote as a duplicate.
            wait_for(lambda: set(_retried(log)) & {r["delivery_id"] for r in records(log)
                                                   if r["model"].get("name") == name}, timeout=30)
            assert crashing.starts >= 2
    mine = [r for r in records(log) if r["model"].get("name") == name]
    assert len(mine) == 1
    assert mine[0]["delivery_id"] in _retried(log), "MLflow's retry must reach the receiver"
    ship_audit(log, es_url, namespace, tmp_path)
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    assert es.count(index=f"logs-modelregistry.*-{namespace}", query={"term": {"modelregistry.model.name": name}})[
        "count"] == 1


def _retried(log: Path) -> list[str]:
    """The delivery ids the receiver answered as duplicates (from its log's whole lines)."""
    receiver_log = log.with_name(log.name + ".receiver-stderr").read_text()
    whole = receiver_log[:receiver_log.rfind("\n") + 1]
    return [json.loads(line)["delivery_id"] for line in whole.splitlines() if "delivery_duplicate" in line]


def test_audit_log_follows_rotation_and_is_fsynced_per_line(tmp_path: Path) -> None:
    from pipeline.receiver import AuditLog

    path = tmp_path / "audit.log"
    audit_log = AuditLog(path)
    audit_log.append({"delivery_id": "a", "received_at": time.time()})
    path.rename(tmp_path / "audit.log.1")  # logrotate's rename
    audit_log.append({"delivery_id": "b", "received_at": time.time()})
    assert [r["delivery_id"] for r in records(tmp_path / "audit.log.1")] == ["a"]
    assert [r["delivery_id"] for r in records(path)] == ["b"]
    assert sorted(audit_log.recent_delivery_ids(time.time() - 60)) == ["a", "b"]
    audit_log.close()


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_stalled_clients_are_timed_out_and_do_not_cost_a_thread_each(tmp_path: Path) -> None:
    import socket

    log = tmp_path / "audit.log"
    port = free_port()
    env = {**os.environ, "REGWATCH_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([*REGWATCH, "audit-receiver", "--log", str(log), "--listen", f"127.0.0.1:{port}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=30)
        before = _threads(process.pid)
        stalled = []
        for _ in range(100):  # a head that promises a body that never comes
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /mlflow/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
            stalled.append(sock)
        time.sleep(1.0)  # their heads are read: requests under way, waiting for bodies
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]  # say nothing at all
        time.sleep(1.0)
        assert _threads(process.pid) <= before + 8  # not one thread per connection
        with pytest.raises(urllib.error.HTTPError) as capped:  # 100 requests under way (--max-connections): 503
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        assert capped.value.code == 503 and capped.value.headers["Retry-After"] == "1"
        for sock in silent + stalled:
            sock.settimeout(20)
        answers = [sock.recv(200) for sock in stalled]
        # body deadline
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), [
            a[:20] for a in answers if not a.startswith(b"HTTP/1.1 408")]
        assert all(sock.recv(10) == b"" for sock in silent[:5])  # closed by the head deadline (10 s)
        for sock in silent + stalled:
            sock.close()
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=15)  # the deadlines freed it
        unsigned = urllib.request.Request(f"http://127.0.0.1:{port}/mlflow/webhook", data=b"{}", method="POST",
                                          headers={"X-MLflow-Signature": "v1,forged", "X-MLflow-Delivery-Id": "d-x",
                                                   "X-MLflow-Timestamp": str(int(time.time()))})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=5)
        assert refused.value.code == 401
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert process.returncode in (0, -15), stderr.decode()[-2000:]  # uvicorn re-raises SIGTERM once it has stopped
    refusals = [json.loads(line) for line in stderr.decode().splitlines() if "delivery_refused" in line]
    assert refusals and refusals[0]["reason"] == "bad signature" and refusals[0]["delivery_id"] == "d-x"
    assert SECRET not in stderr.decode() and "forged" not in stderr.decode()


def test_idle_reconnecting_clients_do_not_hold_deliveries_at_503(tmp_path: Path) -> None:
    """100 clients that connect, say nothing and reconnect as soon as they are let go: they once
    filled the connection cap (uvicorn's limit_concurrency) and every delivery got 503."""
    import socket

    log = tmp_path / "audit.log"
    port = free_port()
    stop = threading.Event()
    held: list[socket.socket] = []

    def hold_idle() -> None:
        while not stop.is_set():
            for i, sock in enumerate(held):
                try:
                    sock.setblocking(False)
                    gone = sock.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    sock.close()
                    held[i] = socket.create_connection(("127.0.0.1", port))
            time.sleep(0.05)

    with SupervisedReceiver(log, port) as receiver:
        held.extend(socket.create_connection(("127.0.0.1", port)) for _ in range(100))
        holder = threading.Thread(target=hold_idle, daemon=True)
        holder.start()
        try:
            time.sleep(0.5)
            body = json.dumps({"entity": "registered_model", "action": "created",
                               "timestamp": "2026-11-25T20:00:00+00:00", "data": {"name": "m"}}).encode()
            for n in range(3):
                now = str(int(time.time()))
                delivery = f"idle-{n}"
                headers = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": now,
                           "X-MLflow-Signature": sign(SECRET, delivery, now, body), "Content-Type": "application/json"}
                assert post(receiver.url, body, headers) == 200
            assert _healthy(receiver.url)
        finally:
            stop.set()
            holder.join(5)
            for sock in held:
                sock.close()
    assert [r["delivery_id"] for r in records(log)] == ["idle-0", "idle-1", "idle-2"]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("args,message", [
    (["--listen", "localhost"], "--listen: 'localhost' is not host:port"),
    (["--listen", "127.0.0.1:99999"], "is not host:port"),
    (["--tolerance", "-1"], "--tolerance: -1.0 is not a positive"),
    (["--max-body", "-5"], "--max-body: -5 is not a positive"),
])
def test_receiver_options_are_checked_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    env = {**os.environ, "REGWATCH_WEBHOOK_SECRET": SECRET}
    result = subprocess.run([*REGWATCH, "audit-receiver", "--log", str(tmp_path / "a.log"), *args], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {**os.environ, "REGWATCH_WEBHOOK_SECRET": SECRET}
        result = subprocess.run([*REGWATCH, "audit-receiver", "--log", str(tmp_path / "a.log"), "--listen",
                                 f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot listen" in result.stderr and "Traceback" not in result.stderr
    assert SECRET not in result.stderr


def test_a_failed_write_leaves_no_fragment(tmp_path: Path) -> None:
    from pipeline.receiver import AuditLog

    path = tmp_path / "audit.log"
    audit_log = AuditLog(path)
    audit_log.append({"delivery_id": "a", "received_at": time.time()})
    real_fsync = os.fsync
    try:
        os.fsync = lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        with pytest.raises(OSError):
            audit_log.append({"delivery_id": "b", "received_at": time.time()})
    finally:
        os.fsync = real_fsync
    audit_log.append({"delivery_id": "c", "received_at": time.time()})
    assert [r["delivery_id"] for r in records(path)] == ["a", "c"]
    audit_log.close()


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return json.loads(response.read())


def _arrived(log: Path, name: str) -> bool:
    return any(r["model"].get("name") == name for r in records(log))


def test_after_an_mlflow_restart_without_the_key_register_says_the_cause_and_the_way_back(tmp_path: Path) -> None:
    """MLflow without MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY encrypts webhook secrets with a key of its
    process: restarted, it reads none (500 with an empty message). `register` used to say "MLflow
    refused the webhook"; it names the cause and the recovery, and the recovery it names works."""
    import sqlite3

    from mlflow import MlflowClient

    log = tmp_path / "audit.log"
    workdir, port = tmp_path / "mlflow", free_port()
    with SupervisedReceiver(log, free_port()) as receiver:
        with mlflow_server(workdir, port, env=MLFLOW_ENV, gunicorn=False) as (mlflow_url, _):
            register(mlflow_url, receiver.url)
        with mlflow_server(workdir, port, env=MLFLOW_ENV, gunicorn=False) as (mlflow_url, _):  # restarted
            lost = "lost-" + uuid.uuid4().hex[:6]
            MlflowClient(mlflow_url).create_registered_model(lost)
            failed = run_register(mlflow_url, receiver.url)
        assert failed.returncode == 1, failed.stderr
        assert "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" in failed.stderr
        assert "DELETE FROM webhooks WHERE name = 'regwatch-audit'" in failed.stderr
        assert "refused" not in failed.stderr and "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
        assert not _arrived(log, lost)  # the delivery MLflow could not sign is lost: why the message matters
        # The way back, as the message says: a fixed key, the unreadable webhook removed, register again.
        keyed = {**MLFLOW_ENV, "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": fernet_key()}
        with mlflow_server(workdir, port, env=keyed, gunicorn=False) as (mlflow_url, _):
            with sqlite3.connect(workdir / "mlflow.db") as db:
                db.execute("DELETE FROM webhooks WHERE name = 'regwatch-audit'")
            register(mlflow_url, receiver.url)
            back = "back-" + uuid.uuid4().hex[:6]
            MlflowClient(mlflow_url).create_registered_model(back)
            wait_for(lambda: _arrived(log, back), timeout=30)


def fernet_key() -> str:
    """A key as MLflow wants one in MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY (Fernet: 32 bytes, url-safe base64)."""
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_with_the_demos_key_deliveries_survive_an_mlflow_restart(tmp_path: Path) -> None:
    """The demo restarts its registry: its MLflow has a fixed key for webhook secrets, so the audit
    trail goes on after the restart and `register` updates the same webhook."""
    from mlflow import MlflowClient

    from regwatch.demo.stack import Stack

    env = Stack(tmp_path / "demo", "t", use_nginx=False).registry.env
    assert env.get("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
    log = tmp_path / "audit.log"
    workdir, port = tmp_path / "mlflow", free_port()
    with SupervisedReceiver(log, free_port()) as receiver:
        with mlflow_server(workdir, port, env=env, gunicorn=False) as (mlflow_url, _):
            register(mlflow_url, receiver.url)
        with mlflow_server(workdir, port, env=env, gunicorn=False) as (mlflow_url, _):  # restarted
            name = "survives-" + uuid.uuid4().hex[:6]
            MlflowClient(mlflow_url).create_registered_model(name)
            wait_for(lambda: _arrived(log, name), timeout=30)
            register(mlflow_url, receiver.url)
        assert _health(receiver.url)["test_deliveries"] == 2  # register's test deliveries: received...
    assert not _arrived(log, "example_model")  # ...and no registry event


def test_mlflows_test_delivery_is_answered_and_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own test delivery (`test_webhook`, what `register` calls), for each event the
    receiver is registered for: verified and answered 200, counted, and no audit line (it used to be
    an `example_model` registration each time). A real delivery of the same shape is still written."""
    from mlflow.entities.webhook import Webhook, WebhookEvent
    from mlflow.webhooks import delivery as mlflow_delivery

    from parsers.mlflow_webhook import REGISTRY_EVENTS, canonical_record
    from pipeline.receiver import AuditLog, Receiver

    log = tmp_path / "audit.log"
    receiver = Receiver(AuditLog(log), SECRET, canonical_record)
    answers: list[int] = []

    class Session:  # MLflow's request, handed to the receiver as it would arrive
        def post(self, url: str, data: bytes, headers: dict[str, str], timeout: float) -> object:
            status, _ = receiver.handle({k.lower(): v for k, v in headers.items()}, data)
            answers.append(int(status))
            return type("Response", (), {"status_code": int(status), "text": ""})()

    monkeypatch.setattr(mlflow_delivery, "_get_or_create_webhook_session", Session)
    monkeypatch.setattr(mlflow_delivery, "_validate_webhook_url", lambda url: None)
    for event in REGISTRY_EVENTS:
        entity, action = event.split(".")
        webhook = Webhook("w-1", "regwatch-audit", "http://receiver/mlflow/webhook", [WebhookEvent(entity, action)],
                          0, 0, secret=SECRET)
        result = mlflow_delivery.test_webhook(webhook)
        assert result.success, (event, result.error_message)
    assert answers == [200] * len(REGISTRY_EVENTS) and receiver.test_deliveries == len(REGISTRY_EVENTS)
    assert records(log) == []
    real = json.dumps({"entity": "registered_model", "action": "created", "timestamp": "2026-12-04T20:00:00+00:00",
                       "data": {"name": "example_model", "tags": {}, "description": None}}).encode()
    now = str(int(time.time()))
    status, _ = receiver.handle({"x-mlflow-delivery-id": "d-real", "x-mlflow-timestamp": now,
                                 "x-mlflow-signature": sign(SECRET, "d-real", now, real)}, real)
    assert status == 200 and [r["model"]["name"] for r in records(log)] == ["example_model"]
