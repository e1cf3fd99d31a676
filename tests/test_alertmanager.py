"""The alertmanager notifier against the real Alertmanager (Debian's prometheus-alertmanager).

An alert fires: Alertmanager shows it active with the rule's labels and routes it to its receiver;
it is re-posted while it fires (endsAt moves on); it resolves: Alertmanager sends the resolution
and no longer shows it active.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from rules.notify import AlertmanagerTarget
from rules.runner import Runner
from support.httpstub import StubHandler, serve
from support.monitoring import alertmanager, wait_for
from support.rules import index_events, write_rules

RULE = """
rules:
  - name: churn-errors
    type: threshold
    kinds: [error]
    group_by: modelregistry.model.name
    window: 6s
    interval: 6s
    condition: {op: ">", value: 5}
    recovery: {op: "<", value: 2}
    severity: critical
    labels: {team: ml-platform}
    notify: [am]
"""


class _Received(StubHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:
        _Received.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self._send(200, {})


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_alert_shape_labels_and_times() -> None:
    target = AlertmanagerTarget(type="alertmanager", url="http://am:9093/", labels={"environment": "prod"},
                                resend_s=60)
    payload = {"rule": "registry-down", "group": "mlflow", "group_by": "modelregistry.probe.target",
               "state": "firing", "value": 3, "threshold": 3, "severity": "critical", "since": 1000.0, "at": 1010.0,
               "labels": {"team": "ml", "bad-name": "x"}, "message": "down", "key": "k",
               "dashboard": "https://kibana.example/app/dashboards#/view/x"}
    alert = target.alert(payload)
    assert alert["labels"] == {"alertname": "registry-down", "rule": "registry-down", "severity": "critical",
                               "target": "mlflow", "environment": "prod", "team": "ml"}
    assert _epoch(alert["startsAt"]) == 1000.0 and _epoch(alert["endsAt"]) == 1010.0 + 4 * 60
    assert alert["annotations"]["message"] == "down" and alert["generatorURL"] == payload["dashboard"]
    resolved = target.alert(payload | {"state": "resolved", "at": 1100.0})
    assert _epoch(resolved["endsAt"]) == 1100.0 and resolved["labels"] == alert["labels"]  # the same alert
    assert target.url == "http://am:9093"
    with pytest.raises(ValueError, match="label names"):
        AlertmanagerTarget(type="alertmanager", url="http://am:9093", labels={"not ok": "x"})


def test_fires_in_alertmanager_is_reposted_and_resolves(es: Elasticsearch, namespace: str, tmp_path: Path) -> None:
    _Received.bodies = []
    rules = write_rules(tmp_path, RULE)
    with serve(_Received) as hook, alertmanager(tmp_path / "am", hook) as am:
        target = AlertmanagerTarget(type="alertmanager", url=am.url, labels={"environment": "test"}, resend_s=5)
        runner = Runner(es, rules, namespace, {"am": target}, "a")

        index_events(es, namespace, "error", time.time() - 1.5, 8, model="churn")
        report = runner.cycle()
        first_cycle = time.time()
        assert ("churn-errors", "churn", "firing") in report.transitions and len(report.sent) == 1

        active = wait_for(lambda: am.alerts(), 10, "the alert in Alertmanager")
        assert len(active) == 1
        alert = active[0]
        assert alert["status"]["state"] == "active"
        assert alert["labels"] == {"alertname": "churn-errors", "rule": "churn-errors", "severity": "critical",
                                   "model": "churn", "environment": "test", "team": "ml-platform"}
        assert "8" in alert["annotations"]["message"]
        first_end = _epoch(alert["endsAt"])
        fired = wait_for(lambda: [b for b in _Received.bodies if b["status"] == "firing"], 10, "Alertmanager's firing")
        assert fired[0]["alerts"][0]["labels"]["model"] == "churn"

        # Still firing one interval later: re-posted, so Alertmanager's copy lives on (endsAt moved).
        # However long the waits above took, every window the next cycle evaluates (it catches up
        # on those it missed) holds errors: 8 a second since the first cycle.
        time.sleep(max(0.0, first_cycle + 6.2 - time.time()))
        moment = first_cycle - 1.0
        while moment < time.time() - 1.5:
            index_events(es, namespace, "error", moment, 8, model="churn")
            moment += 1.0
        report = runner.cycle()
        assert not report.transitions and not report.sent  # a re-post is not a new notification
        reposted = wait_for(lambda: [a for a in am.alerts() if _epoch(a["endsAt"]) > first_end + 4], 10,
                            "the re-posted alert")
        assert len(reposted) == 1 and reposted[0]["startsAt"] == alert["startsAt"]
        assert runner.metrics.firing.labels("churn-errors", "critical")._value.get() == 1

        time.sleep(6.2)  # no events in the window: resolves
        report = runner.cycle()
        assert ("churn-errors", "churn", "resolved") in report.transitions and len(report.sent) == 1
        wait_for(lambda: not am.alerts(active="true"), 10, "Alertmanager to show no active alert")
        resolved = wait_for(lambda: [b for b in _Received.bodies if b["status"] == "resolved"], 15,
                            "Alertmanager's resolution")
        assert resolved[0]["alerts"][0]["labels"]["model"] == "churn"
        assert len([b for b in _Received.bodies if b["status"] == "firing"]) == 1  # one incident, one page
        assert runner.metrics.firing.labels("churn-errors", "critical")._value.get() == 0


def test_data_never_overwrites_reserved_target_or_rule_labels() -> None:
    """Issue 25: a group value or a rule label named ``alertname``, ``severity`` or like one of the
    target's labels changed how Alertmanager routed and silenced the alert."""
    target = AlertmanagerTarget(type="alertmanager", url="https://am:9093", labels={"environment": "prod"})
    payload = {"rule": "registry-down", "group": "evil", "group_by": "service.environment", "state": "firing",
               "value": 1,
               "threshold": 0, "severity": "critical", "since": 1000.0, "at": 1000.0, "message": "m", "key": "k",
               "labels": {"alertname": "x", "severity": "info", "rule": "y", "environment": "dev", "team": "ml"}}
    assert target.alert(payload)["labels"] == {"alertname": "registry-down", "rule": "registry-down",
                                               "severity": "critical", "environment": "prod", "team": "ml",
                                               "group_environment": "evil"}
    several = payload | {"group": "x|y|z",
                         "groups": {"alertname": "a", "severity": "none", "service.environment": "dev",
                                    "team": "other", "modelregistry.model.name": "churn"}}
    assert target.alert(several)["labels"] == {"alertname": "registry-down", "rule": "registry-down",
                                               "severity": "critical", "environment": "prod", "team": "ml",
                                               "group_alertname": "a", "group_severity": "none",
                                               "group_environment": "dev", "group_team": "other", "model": "churn"}


def test_a_bearer_token_over_plain_http_is_warned_at_start() -> None:
    def warned(url: str, token: str | None = "AM_TOKEN") -> list[str]:
        return AlertmanagerTarget(type="alertmanager", url=url, bearer_token_env=token).warnings()

    assert warned("http://am.example:9093") == [
        "bearer_token_env over plain http to http://am.example:9093: "
        "the token crosses the network in clear (use https)"]
    assert warned("http://u:pw@am.example:9093")[0].startswith("bearer_token_env over plain http to http://am.example")
    assert warned("https://am.example:9093") == [] and warned("http://127.0.0.1:9093") == []
    assert warned("http://am.example:9093", None) == []
