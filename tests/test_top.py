"""``regwatch top``: the overview's numbers against lines we wrote, shipped by the real shipper,
availability documents from the real probe, and an alert firing in the runner's state."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from elasticsearch import Elasticsearch

from regwatch.config import load_config
from regwatch.ship import build_shipper
from rules.state import StateStore, Versioned
from support.shipping import write_config

CLI = [sys.executable, "-m", "regwatch.cli"]


def _line(when: float, path: str, status: int, rt: float, model: str, agent: str = "client") -> str:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'10.0.0.1 - - [{stamp}] "GET {path}?name={model} HTTP/1.1" {status} 10 "-" "{agent}" '
            f'rt={rt:.3f} uct="0.000" urt="{rt:.3f}"\n')


def test_top_shows_what_was_shipped(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    now = time.time()
    log = tmp_path / "access.log"
    lines = []
    # 18 model reads (retrieval) at 10 ms .. 180 ms, 2 failed reads (error: the server's), 1 health
    # check (access).
    for i in range(18):
        lines.append(_line(now - 90 + i, "/api/2.0/mlflow/registered-models/get", 200, 0.010 * (i + 1),
                           "fraud" if i % 3 else "churn"))
    lines += [_line(now - 30, "/api/2.0/mlflow/registered-models/get", 500, 0.005, "nope") for _ in range(2)]
    lines.append(_line(now - 20, "/health", 200, 0.001, "-"))
    log.write_text("".join(lines))
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))
    summary = build_shipper(config).run(once=True)
    assert summary.events == 21

    availability = f"metrics-modelregistry.availability-{namespace}"
    for i, up in enumerate([True, True, True, False]):
        es.index(index=availability, op_type="create", document={
            "@timestamp": datetime.fromtimestamp(now - 40 + i * 10, UTC).isoformat(),
            "modelregistry": {"probe": {"up": up, "check": "health", "target": "mlflow"}},
            **({} if up else {"error": {"type": "connection_refused"}})})
    store = StateStore(es, namespace)
    store.ensure()
    store.write(Versioned("alert:x", {}), {"type": "alert", "rule": "registry-down", "group": "mlflow",
                                           "state": "firing", "since": now - 5, "value": 3.0})
    es.indices.refresh(index=f"*-modelregistry.*-{namespace},{store.index}")

    result = subprocess.run([*CLI, "top", "--json", "--namespace", namespace],
                            env={"ES_URL": es_url, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["calls"] == 20 and view["failures"] == 2 and view["error_ratio"] == 0.1
    assert {k: sum(v) for k, v in view["per_minute"].items()} == {"retrieval": 18, "error": 2, "access": 1}
    assert all(len(v) == 5 for v in view["per_minute"].values())
    assert view["models"] == {"fraud": 12, "churn": 6, "nope": 2}
    assert 80 <= view["p50_ms"] <= 110 and 160 <= view["p95_ms"] <= 180
    assert view["availability"] == {"mlflow": {"up_ratio": 0.75, "checks": 4, "up_now": False,
                                               "reason": "connection_refused"}}
    assert [(a["rule"], a["state"]) for a in view["firing"]] == [("registry-down", "firing")]
    assert view["newest_ingested_s_ago"] is not None and 0 <= view["newest_delay_s"] < 300

    frame = subprocess.run([*CLI, "top", "--once", "--namespace", namespace],
                           env={"ES_URL": es_url, "PATH": "/usr/bin:/bin", "COLUMNS": "160"},
                           capture_output=True, text=True, timeout=60)
    assert frame.returncode == 0, frame.stderr
    assert "error ratio 10.0%" in frame.stdout and "registry-down" in frame.stdout
    assert "down (connection_refused)" in frame.stdout and "fraud" in frame.stdout


def test_top_leaves_the_probe_out_unless_asked_and_a_404_is_no_failure(es: Elasticsearch, es_url: str,
                                                                         namespace: str, tmp_path: Path) -> None:
    """The probe's downloads do not make its model the busiest, nor its failures the error ratio;
    a client's 404 on a lookup is a call, not a failure. ``--synthetic`` counts the probe too."""
    from pipeline.probe.check import USER_AGENT

    now = time.time()
    get = "/api/2.0/mlflow/registered-models/get"
    lines = [_line(now - 60 + i, get, 200, 0.01, "fraud") for i in range(6)]
    lines += [_line(now - 50, get, 404, 0.01, "fraud"), _line(now - 50, get, 503, 0.01, "fraud")]
    lines += [_line(now - 40 + i, get, 200, 0.01, "churn", USER_AGENT) for i in range(10)]
    lines += [_line(now - 20, get, 503, 0.01, "churn", USER_AGENT) for _ in range(2)]
    log = tmp_path / "access.log"
    log.write_text("".join(lines))
    assert build_shipper(load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))).run(
        once=True).events == len(lines)
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    env = {"ES_URL": es_url, "PATH": "/usr/bin:/bin"}

    def view(*extra: str) -> dict:
        result = subprocess.run([*CLI, "top", "--json", "--namespace", namespace, *extra], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    users = view()
    assert users["models"] == {"fraud": 8} and users["calls"] == 8 and users["failures"] == 1
    assert {k: sum(v) for k, v in users["per_minute"].items()} == {"retrieval": 6, "error": 2}
    everyone = view("--synthetic")
    assert everyone["models"] == {"churn": 12, "fraud": 8} and everyone["calls"] == 20 and everyone["failures"] == 3


def test_top_against_nothing_is_empty_not_an_error(es_url: str) -> None:
    result = subprocess.run([*CLI, "top", "--json", "--namespace", "nosuchns"],
                            env={"ES_URL": es_url, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["calls"] == 0 and view["error_ratio"] is None and view["firing"] == []


def test_top_with_elasticsearch_away_is_one_line(tmp_path: Path) -> None:
    from regwatch.demo.ports import free_port

    result = subprocess.run([*CLI, "top", "--once"],
                            env={"ES_URL": f"http://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_hostile_model_names_are_printed_as_they_are(es: Elasticsearch, es_url: str, namespace: str,
                                                     tmp_path: Path) -> None:
    """Model names come from log lines: rich markup in one (an unmatched closing tag made rich
    raise, so `top` died), NUL, invalid UTF-8 and a huge name go through parse, index and the view."""
    now = time.time()
    names = ["%5B%2Fred%5D", "%5Bblink%5Dx%5B%2Fblink%5D", "a%00b", "bad%FF%FEutf8", "m" * 20000]
    log = tmp_path / "access.log"
    log.write_text("".join(_line(now - 30, "/api/2.0/mlflow/registered-models/get", 200, 0.01, n) for n in names))
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))
    summary = build_shipper(config).run(once=True)
    assert summary.events + sum(summary.deadletters.values()) == len(names)
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    env = {"ES_URL": es_url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    view = subprocess.run([*CLI, "top", "--json", "--namespace", namespace], env=env, capture_output=True, text=True,
                          timeout=60)
    assert view.returncode == 0, view.stderr
    models = json.loads(view.stdout)["models"]
    assert "[/red]" in models and "[blink]x[/blink]" in models
    frame = subprocess.run([*CLI, "top", "--once", "--namespace", namespace], env=env, capture_output=True,
                           text=True, timeout=60)
    assert frame.returncode == 0, frame.stderr
    assert "[/red]" in frame.stdout and "[blink]x[/blink]" in frame.stdout


def test_a_namespace_that_is_not_one_is_refused(tmp_path: Path) -> None:
    """``--namespace 'x,other-index'`` read any index the credentials could; it is one line now."""
    for value in ("x,regwatch-alert-state-x", "../x", "a\x1b[2J"):
        result = subprocess.run([*CLI, "top", "--json", "--namespace", value], capture_output=True, text=True,
                                timeout=60, env={"ES_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [f"error: --namespace {value!r}: lowercase, no '-', spaces or "
                                              "\\/*?\"<>|,#:"], result.stderr
        assert "\x1b" not in result.stderr


def _explained(start: float, observed: float, score: float, learning: bool = False) -> dict:
    from contract.timestamps import iso_from_epoch

    return {"observed": observed, "expected": 10.0, "lower": 8.0, "upper": 12.0, "score": score, "learning": learning,
            "period_s": 0.0, "bucket": {"start": iso_from_epoch(start), "end": iso_from_epoch(start + 300)}}


def test_top_shows_the_highest_current_anomaly_scores(es: Elasticsearch, es_url: str, namespace: str,
                                                      tmp_path: Path) -> None:
    """Each anomaly rule and group's newest result, highest score first: a series that was unusual
    an hour ago and is usual now shows its score of now."""
    from rules.model import load_rules
    from rules.query import Measurement
    from rules.results import Results

    (tmp_path / "r.yaml").write_text(
        "rules:\n"
        "  - {name: odd-traffic, type: anomaly, kinds: [access], window: 5m, history: 2d, notify: []}\n"
        "  - {name: by-model, type: anomaly, kinds: [retrieval], window: 5m, history: 2d, notify: [],\n"
        "     group_by: modelregistry.model.name}\n")
    odd, by_model = load_rules(tmp_path)
    bucket = (time.time() // 300 - 1) * 300
    writer = Results(es, namespace)
    writer.add(odd, [Measurement("*", 90.0, (_explained(bucket - 3600, 55.0, 90.0),))])
    writer.add(odd, [Measurement("*", 10.0, (_explained(bucket, 11.0, 10.0),))])
    writer.add(by_model, [Measurement("fraud", 70.0, (_explained(bucket, 40.0, 70.0),)),
                          Measurement("churn", 0.0, (_explained(bucket, 3.0, 0.0, learning=True),))])
    assert writer.flush() == 4
    es.indices.refresh(index=f"logs-modelregistry.anomaly-{namespace}")
    env = {"ES_URL": es_url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    result = subprocess.run([*CLI, "top", "--json", "--namespace", namespace], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    now_iso = datetime.fromtimestamp(bucket, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert view["anomalies"] == [
        {"rule": "by-model", "group": "fraud", "score": 70.0, "actual": 40.0, "expected": 10.0, "lower": 8.0,
         "upper": 12.0, "learning": False, "bucket": now_iso},
        {"rule": "odd-traffic", "group": "*", "score": 10.0, "actual": 11.0, "expected": 10.0, "lower": 8.0,
         "upper": 12.0, "learning": False, "bucket": now_iso},
        {"rule": "by-model", "group": "churn", "score": 0.0, "actual": 3.0, "expected": 10.0, "lower": 8.0,
         "upper": 12.0, "learning": True, "bucket": now_iso},
    ]
    assert view["calls"] == 0 and view["newest_ingested_s_ago"] is None  # results are no shipped lines
    frame = subprocess.run([*CLI, "top", "--once", "--namespace", namespace], env=env, capture_output=True,
                           text=True, timeout=60)
    assert frame.returncode == 0, frame.stderr
    rows = [line for line in frame.stdout.splitlines() if "by-model" in line or "odd-traffic" in line]
    assert [line.replace("│", " ").split()[:3] for line in rows] == [
        ["by-model", "fraud", "70"], ["odd-traffic", "*", "10"], ["by-model", "churn", "learning"]]
