"""regwatch's services around the demo registry, run as they would be in production.

One configuration file (``regwatch.yaml`` in the work folder) for the shipper (the registry's
access log and the audit log), the probe (the registry's health through its front, a synthetic
transaction, this host's resources) and the rule runner (the built-in rules at demo speed,
notifying the demo's webhook receiver). Each service is its own ``regwatch`` process.
Elasticsearch comes from ``ES_URL`` (or the local default); its credentials stay in the
environment and never reach the file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from regwatch.demo.ports import free_port
from regwatch.demo.processes import Processes, Spec
from regwatch.demo.registry import Registry, wait_healthy

DEMO_SETTINGS = Path(__file__).with_name("demo.yaml")
BUILTIN_RULES = Path(__file__).resolve().parents[2] / "rules" / "builtin"
NOTIFIER = "demo-webhook"
SECRET_ENV = "REGWATCH_WEBHOOK_SECRET"


def regwatch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "regwatch.cli", *args]


def mlflow_env(registry_dir: Path) -> dict[str, str]:
    """The demo MLflow's environment: webhooks to a plain-http receiver on this host, and a fixed key
    for the webhook secrets MLflow stores. Without ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY`` MLflow
    encrypts them with a key of its process, and after the demo restarts the registry it could read
    none of them: the audit trail would stop. The key is kept beside the registry's database, as
    long as it lives."""
    key_file = registry_dir / "webhook-encryption.key"
    if not key_file.exists():
        registry_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))  # a Fernet key
        key_file.chmod(0o600)
    return {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_CACHE_TTL": "1", "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": key_file.read_text().strip()}


@dataclass
class Ports:
    registry: int
    mlflow: int
    receiver: int
    sink: int
    shipper_metrics: int
    probe_metrics: int
    rules_metrics: int
    inventory_metrics: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(**{name: free_port() for name in cls.__dataclass_fields__})


ANOMALY_RULES = BUILTIN_RULES / "anomaly"  # loaded when named (rules.folders: [builtin, builtin/anomaly])


def anomaly_rule_names() -> list[str]:
    """The built-in anomaly rules the demo runs (rules/builtin/anomaly)."""
    return [rule["name"] for path in sorted(ANOMALY_RULES.glob("*.y*ml"))
            for rule in yaml.safe_load(path.read_text())["rules"]]


def demo_rules(target: Path, settings: dict[str, Any]) -> Path:
    """The built-in rules and the built-in anomaly rules with the demo's timings, every one
    notifying the demo's receiver."""
    timings = settings["rules"]
    rules = []
    for path in [*sorted(BUILTIN_RULES.glob("*.y*ml")), *sorted(ANOMALY_RULES.glob("*.y*ml"))]:
        for rule in yaml.safe_load(path.read_text())["rules"]:
            rule.update(timings.get("default", {}), **timings.get(rule["name"], {}), notify=[NOTIFIER])
            rules.append(rule)
    target.mkdir(parents=True, exist_ok=True)
    out = target / "demo.yaml"
    out.write_text("# rules/builtin at demo speed (regwatch/demo/demo.yaml)\n"
                   + yaml.safe_dump({"rules": rules}, sort_keys=False))
    return target


class Stack:
    """The registry and regwatch's services in one work folder."""

    def __init__(self, workdir: Path, namespace: str, ports: Ports | None = None, use_nginx: bool = True) -> None:
        workdir = workdir.resolve()  # nginx and the services read these paths from elsewhere
        self.workdir = workdir
        self.namespace = namespace
        self.processes = Processes(workdir)
        self.ports = ports or Ports.pick()
        self.secret = secrets.token_hex(24)  # the webhook secret: in the environment of two processes only
        self.registry = Registry(workdir / "registry", self.processes, self.ports.registry, self.ports.mlflow,
                                 env=mlflow_env(workdir / "registry"), use_nginx=use_nginx)
        self.settings = yaml.safe_load(DEMO_SETTINGS.read_text())
        self.audit_log = workdir / "audit" / "mlflow-audit.log"
        # the registry's past, as a rotated access log the shipper finds on its first start
        self.history_log = workdir / "registry" / "history" / "access.log.1"
        self.notifications = workdir / "notifications.jsonl"
        self.config_path = workdir / "regwatch.yaml"
        self.mlflow_pid_file = workdir / "registry" / "mlflow.pid"
        self.history_written: tuple[int, float] | None = None

    def write_config(self) -> Path:
        rules_folder = demo_rules(self.workdir / "rules", self.settings)
        config = {
            "namespace": self.namespace,
            "checkpoint_file": str(self.workdir / "checkpoints.json"),
            "metrics_port": self.ports.shipper_metrics,
            "poll_interval_s": 0.5,
            "batch": {"max_wait_s": 0.2},
            "inputs": [
                {"paths": [str(self.registry.access_log)], "format": self.registry.log_format,
                 "service_environment": "demo"},
                {"paths": [str(self.audit_log)], "format": "audit", "service_environment": "demo"},
                {"paths": [str(self.history_log)], "format": "nginx", "service_environment": "demo"},
            ],
            "rules": {"folder": str(rules_folder), "runner_id": "demo", "metrics_port": self.ports.rules_metrics,
                      "notifiers": {NOTIFIER: {"type": "webhook", "url": f"http://127.0.0.1:{self.ports.sink}/notify"}}},
            "inventory": {"interval_s": self.settings["inventory_interval_s"],
                          "metrics_port": self.ports.inventory_metrics,
                          "backoff_max_s": 5,
                          "registries": [{"name": "demo", "url": self.registry.url, "page_size": 1000,
                                          "max_requests_per_poll": 2000}]},
            "probe": {"interval_s": self.settings["probe_interval_s"], "metrics_port": self.ports.probe_metrics,
                      "targets": [{"name": "mlflow", "url": f"{self.registry.url}/health", "environment": "demo",
                                   "timeout_s": 3}],
                      "resources": {"enabled": True, "disk_paths": [str(self.workdir.resolve())],
                                    "pid_file": str(self.mlflow_pid_file)}},
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        (self.workdir / "stack.json").write_text(json.dumps({"namespace": self.namespace, "ports": asdict(self.ports),
                                                             "front": self.registry.front, "url": self.registry.url}))
        return self.config_path

    def write_history(self, ops_per_s: float, hours: float) -> tuple[int, float]:
        """The registry's past (:mod:`regwatch.demo.history`) up to now, for the shipper to find on
        its first start: (lines, seconds it took to write them)."""
        import time

        from regwatch.demo import history

        started = time.monotonic()
        lines = history.write(self.history_log, time.time(), hours * 3600, ops_per_s)
        self.history_written = (lines, time.monotonic() - started)
        return self.history_written

    # -- services ------------------------------------------------------------------------------

    def start_registry(self) -> None:
        self.registry.start()
        self._plain_pid_file()

    def _plain_pid_file(self) -> None:
        """The probe's process fields follow MLflow through a pid file holding the bare pid."""
        pid = self.processes.running("mlflow")
        if pid is not None:
            self.mlflow_pid_file.write_text(f"{pid}\n")

    def stop_registry(self) -> None:
        self.registry.stop()

    def start_services(self) -> None:
        config = str(self.config_path)
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        self.processes.start(Spec("webhook-sink", regwatch_argv("demo", "webhook-sink", "--listen",
                                                                 f"127.0.0.1:{self.ports.sink}", "--out",
                                                                 str(self.notifications))))
        self.processes.start(Spec("audit-receiver", regwatch_argv(
            "audit-receiver", "--log", str(self.audit_log), "--listen", f"127.0.0.1:{self.ports.receiver}"),
            {SECRET_ENV: self.secret}))
        wait_healthy(f"http://127.0.0.1:{self.ports.receiver}/health", self.processes, "audit-receiver", 60)
        self.register_webhook()
        self.processes.start(Spec("shipper", regwatch_argv("ship", "-c", config)))
        self.processes.start(Spec("probe", regwatch_argv("probe", "-c", config)))
        self.processes.start(Spec("rule-runner", regwatch_argv("rules", "run", "-c", config)))
        self.processes.start(Spec("inventory", regwatch_argv("inventory", "-c", config)))
        for name, port in (("shipper", self.ports.shipper_metrics), ("probe", self.ports.probe_metrics),
                           ("rule-runner", self.ports.rules_metrics), ("inventory", self.ports.inventory_metrics)):
            wait_healthy(f"http://127.0.0.1:{port}/metrics", self.processes, name, 60)

    def register_webhook(self) -> None:
        done = subprocess.run(
            regwatch_argv("audit-receiver", "register", "--mlflow", self.registry.url,
                          "--url", f"http://127.0.0.1:{self.ports.receiver}"),
            env={**os.environ, SECRET_ENV: self.secret}, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"registering MLflow's webhook failed: {done.stderr.strip()[-500:]}")

    def check_alive(self) -> list[str]:
        """Services that should run and do not."""
        wanted = ["webhook-sink", "audit-receiver", "shipper", "probe", "rule-runner", "inventory"]
        return [name for name in wanted if self.processes.running(name) is None]
