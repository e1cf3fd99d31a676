"""``regwatch demo up``: the newcomer's path, run as the README runs it (a shorter story).

A real MLflow behind a real nginx, the real shipper, audit receiver, probe and rule runner as their
own processes, the workload through the real MLflow client. The summary's numbers must equal what
the workload recorded (checked here from the truth file and from Elasticsearch, not from the
summary alone), each incident must reach the webhook as exactly one firing and one resolution,
the audit trail must name every model written, and nothing may be left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from parsers.events import event_kind
from parsers.routes import builtin
from regwatch.demo.processes import Processes
from regwatch.demo.scenario import STORM_RULE
from regwatch.demo.stack import anomaly_rule_names
from regwatch.demo.workload import STORM_CLIENT, STORM_MODEL, quality
from rules.anomaly import Detector
from rules.backtest import backtest
from rules.model import AnomalyRule, Rule, RuleFile, load_rules
from rules.query import Window, header
from rules.series import merged, params, points
from rules.staleness import group_of
from rules.types import RULE_TYPES
from support.shipping import wait_for

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "regwatch.cli"]
BUILTIN = Path(__file__).resolve().parent.parent / "rules" / "builtin"
INCIDENT_RULES = ("registry-down", "registry-error-ratio")


def _env(es_url: str, home: Path) -> dict[str, str]:
    return {"ES_URL": es_url, "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home), "COLUMNS": "120"}


def _rule(kind: str) -> Rule:
    """A count of one kind's actions in a minute, users' traffic only (not the registry's past the
    demo wrote before it started), by the time they happened."""
    (rule,) = RuleFile.model_validate({"rules": [{
        "name": f"{kind}s", "type": "threshold", "kinds": [kind],
        "kql": "not modelregistry.synthetic : true and not user_agent.original : *regwatch-history*",
        "window": "60s", "time_field": "@timestamp", "condition": {"op": ">", "value": 1e9}, "notify": []}]}).rules
    return rule


def _measure(es: Elasticsearch, rule: Rule, namespace: str, window: Window) -> dict[str, float]:
    kind = RULE_TYPES[rule.type]
    response = es.search(index=header(rule, namespace)["index"], ignore_unavailable=True, allow_no_indices=True,
                         **kind.request(rule, window))
    return {m.group: m.value for m in kind.measure(rule, response, window)}


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _series(es: Elasticsearch, rule: AnomalyRule, namespace: str, end: float) -> list[float]:
    """The rule's series up to the bucket ending at ``end``, as Elasticsearch holds it now."""
    kind = RULE_TYPES[rule.type]
    window = Window(end - rule.step, end)
    response = es.search(index=header(rule, namespace)["index"], **kind.request(rule, window))
    first = end - rule.points * rule.step
    aggregations = response["aggregations"]
    late = aggregations.get("fallback", {}).get("series", {}).get("buckets", [])
    return list(points(rule, merged(aggregations["series"]["buckets"], late), first))


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _events_and_lines(es: Elasticsearch, pattern: str, path: Path, within_s: float = 30.0) -> tuple[int, int]:
    """The events of ``path`` in Elasticsearch, then the file's lines, once no line is in flight.

    The kept demo goes on with light traffic and its probe, so the log grows while the test reads:
    events are counted (after a refresh) before the lines, and the two are equal once the shipper
    has caught up; more events than lines is a line indexed twice, returned at once."""
    end = time.monotonic() + within_s
    while True:
        es.indices.refresh(index=pattern)
        on_file = es.count(index=pattern, query={"term": {"log.file.path": str(path)}})["count"]
        lines = path.read_bytes().count(b"\n")
        if on_file >= lines or time.monotonic() > end:
            return on_file, lines
        time.sleep(0.5)


def test_demo_summary_equals_what_the_workload_did(es: Elasticsearch, es_url: str, namespace: str,
                                                   tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run([*CLI, "demo", "up", "--quick", "--keep", "--workdir", str(workdir),
                             "--namespace", namespace],
                            env=_env(es_url, tmp_path), capture_output=True, text=True, timeout=900)
    try:
        assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
        summary = json.loads((workdir / "summary.json").read_text())
        truth = [json.loads(line) for line in (workdir / "truth.jsonl").read_text().splitlines()]
        requests = [t for t in truth if t["type"] == "request"]
        operations = [t for t in truth if t["type"] == "operation"]
        assert len(operations) > 200 and len(requests) >= len(operations)

        # The workload's requests, kind by kind, by the route table: what the summary says and what
        # Elasticsearch holds under the run's User-Agent tag.
        router = builtin("mlflow")
        expected = Counter(event_kind(router.http(r["method"], r["path"])[0], r["status"] >= 400) for r in requests)
        assert summary["workload"]["by_kind"] == dict(expected)
        pattern = f"logs-modelregistry.*-{namespace}"
        es.indices.refresh(index=pattern)
        tagged = {"wildcard": {"user_agent.original": {"value": f"*run={summary['run_id']}"}}}
        buckets = es.search(index=pattern, size=0, query=tagged,
                            aggs={"k": {"terms": {"field": "data_stream.dataset"}}})
        stored = {b["key"].rsplit(".", 1)[1]: b["doc_count"] for b in buckets["aggregations"]["k"]["buckets"]}
        assert stored == dict(expected)
        assert {k: v["elasticsearch"] for k, v in summary["kinds"].items()} == dict(expected)
        assert summary["match"] is True
        assert expected["error"] >= 20 and expected["registration"] > 0 and expected["version"] > 0

        # Incident 2 is a failure the error rule counts: the revoked token's 401s from nginx, each
        # one an auth failure in Elasticsearch. The workload's other errors (a 404 on a lookup, a
        # 400 when two clients race to create the same thing) are the client's, and not counted:
        # what Elasticsearch counts as failures is exactly what the workload got as 5xx, 401, 403, 429.
        refused = sum(1 for r in requests if r["status"] == 401)
        assert refused >= 20
        counted = sum(1 for r in requests if r["status"] >= 500 or r["status"] in (401, 403, 429))
        auth = {"bool": {"filter": [tagged, {"term": {"modelregistry.failure": "auth"}}]}}
        assert es.count(index=pattern, query=auth)["count"] == refused
        failures = {"bool": {"filter": [tagged, {"terms": {"modelregistry.failure": ["server", "auth", "throttled"]}}]}}
        assert es.count(index=pattern, query=failures)["count"] == counted

        # Every line of nginx's access log is one event, none twice.
        access_log = workdir / "registry" / "access.log"
        on_file, lines = _events_and_lines(es, pattern, access_log)
        assert summary["front"] == "nginx"
        assert on_file == lines
        assert summary["elasticsearch"]["deadletters"] == 0

        # The audit trail names every model the workload wrote.
        written = {o["model"] for o in operations
                   if o["ok"] and o["op"] in ("create_model", "create_version", "set_alias", "set_version_tag")}
        audit = es.search(index=pattern, size=0, query={"term": {"modelregistry.format": "audit"}},
                          aggs={"m": {"terms": {"field": "modelregistry.model.name", "size": 100}}})
        named = {b["key"] for b in audit["aggregations"]["m"]["buckets"]}
        assert len(written) == 4 and written <= named
        assert summary["audit_missing_models"] == []

        # Every artifact download of a registered version is named by the shipper from the
        # inventory (#30): per version, the models pulled (MLmodel fetches, as `regwatch downloads`
        # counts) equal the workload's own record, and each of their files is named.
        made = Counter(f"{o['model']}/{o['version']}" for o in operations if o["op"] == "download_artifact" and o["ok"])
        assert len(made) >= 4 and sum(made.values()) >= 20
        files = {"bool": {"filter": [tagged, {"term": {"event.action": "artifact-download"}},
                                     {"term": {"event.outcome": "success"}}]}}
        per = es.search(index=pattern, size=0, query=files, aggs={
            "how": {"terms": {"field": "modelregistry.attribution", "missing": "none"}},
            "m": {"terms": {"field": "modelregistry.model.name"},
                  "aggs": {"v": {"terms": {"field": "modelregistry.model.version", "size": 1000},
                                 "aggs": {"models": {"filter": {"wildcard": {
                                     "modelregistry.artifact.path": {"value": "*/MLmodel"}}}}}}}}})["aggregations"]
        pulled = {f"{m['key']}/{v['key']}": (v["models"]["doc_count"], v["doc_count"])
                  for m in per["m"]["buckets"] for v in m["v"]["buckets"]}
        assert pulled == {key: (count, 2 * count) for key, count in made.items()}  # MLmodel and model.txt
        assert {b["key"]: b["doc_count"] for b in per["how"]["buckets"]} == {"artifact-run": 2 * sum(made.values())}
        assert summary["workload"]["downloads_by_version"] == summary["elasticsearch"]["downloads_by_version"] \
            == dict(sorted(made.items()))
        assert summary["elasticsearch"]["downloads_unnamed"] == {}
        assert summary["downloads_match"] is True

        # Each registry action once, with both sources shipped (#27): per minute, the registrations
        # and version changes the rules and `top` count (the larger of the audit trail's and the
        # access log's counts) add up to the workload's own requests of those kinds, although the
        # audit trail recorded many of them too.
        started = min(t["t"] for t in truth) - 60
        for kind in ("registration", "version"):
            rule = _rule(kind)
            minutes = [Window(m, m + 60) for m in range(int(started // 60 * 60), int(time.time()) + 60, 60)]
            counted = sum(sum(_measure(es, rule, namespace, w).values()) for w in minutes)
            documents = sum(sum(_measure(es, rule.model_copy(update={"count": "documents"}), namespace, w).values())
                            for w in minutes)
            assert counted == expected[kind], kind
            assert documents > counted, kind  # the audit trail's records are there, and not counted again
        # Ordinary traffic (mlflow.register_model on existing models, set_experiment of new
        # experiments: 400s and 404s) never took the error rule even to pending before incident 2.
        ordinary = [t for t in requests if t["status"] in (400, 404)]
        assert {r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1] for r in ordinary} >= {
            "registered-models/create", "experiments/get-by-name"}
        burst = min(t["t"] for t in requests if t["status"] == 401)
        error_rule = next(r for r in load_rules(BUILTIN) if r.name == "registry-error-ratio")
        assert backtest(es, error_rule, namespace, started, burst) == []

        # Each incident: exactly one firing and one resolution, in that order.
        notes = [json.loads(line)["payload"] for line in (workdir / "notifications.jsonl").read_text().splitlines()]
        for rule in INCIDENT_RULES:
            assert [n["state"] for n in notes if n["rule"] == rule] == ["firing", "resolved"], notes
        timeline = [t["what"] for t in summary["timeline"]]
        # Story 3 (#30): a worse version promoted to champion fires the regression once; the
        # replicas still pinned to the version it replaced are stale usage, until they stop.
        [story] = [t for t in truth if t["type"] == "story"]
        previous, worse = story["previous"], story["version"]
        [regression] = [n for n in notes if n["rule"] == "champion-regression"]
        assert regression["state"] == "fired" and regression["severity"] == "warning"
        assert regression["event"]["modelregistry"]["model"] == {"name": "fraud-detector", "alias": "champion",
                                                                "version": worse}
        judged = regression["event"]["modelregistry"]["regression"]
        assert {k: judged[k] for k in ("change", "metric", "version", "value", "previous_version")} == {
            "change": "moved", "metric": "accuracy", "version": worse, "value": 0.5, "previous_version": previous}
        assert judged["previous_value"] == quality(previous) and judged["reasons"] == [
            f"accuracy 0.5 is worse than {quality(previous):g}"]
        stale = [n for n in notes if n["rule"] == "champion-stale-usage"]
        assert [(n["state"], n["group"]) for n in stale] == [("firing", group_of("fraud-detector", previous)),
                                                             ("resolved", group_of("fraud-detector", previous))]
        pinned = stale[0]["event"]["modelregistry"]["stale_usage"]
        assert pinned["version"] == previous and pinned["current_version"] == worse and pinned["pulls"] >= 2
        assert timeline.index("worse version registered") < timeline.index("champion-regression fired") \
            and timeline.index("champion-stale-usage firing") < timeline.index("champion-stale-usage resolved")
        # The anomaly rules (#29): the runaway client's storm is caught by registry-retrievals-unusual,
        # which fires once and resolves once ordinary buckets follow; no other anomaly notification,
        # during the history, the normal traffic, the outage, the revoked token or the promotion.
        anomaly_rules = set(anomaly_rule_names())
        assert anomaly_rules == {"registry-retrievals-unusual", "registry-writes-unusual", "registry-latency-unusual"}
        anomalous = [n for n in notes if n["rule"] in anomaly_rules]
        assert [(n["rule"], n["state"]) for n in anomalous] == [(STORM_RULE, "firing"), (STORM_RULE, "resolved")], \
            anomalous
        fired, resolved = anomalous
        [demo_rule] = [r for r in load_rules(workdir / "rules") if r.name == STORM_RULE]
        assert isinstance(demo_rule, AnomalyRule) and demo_rule.step == 10 and demo_rule.time_field == "@timestamp"
        runaway_calls = [t["t"] for t in requests if t["client"] == STORM_CLIENT]
        storm_started, storm_stopped = min(runaway_calls), max(runaway_calls)
        for note, state in ((fired, "firing"), (resolved, "resolved")):
            seen = note["event"]
            start, end = _epoch(seen["bucket"]["start"]), _epoch(seen["bucket"]["end"])
            assert end - start == 10 and end % 10 == 0
            # What the detector made of the bucket, replayed here from Elasticsearch's series with
            # the bucket's value as the runner counted it (calls shipped after its evaluation are
            # in Elasticsearch now, not in its decision): every figure the same.
            series = _series(es, demo_rule, namespace, end)
            # the history is there: 5 h of 10 s points (from the first with a call: the night is quiet)
            assert demo_rule.points - 60 <= len(series) <= demo_rule.points == 1800
            detector = Detector(params(demo_rule))
            for value in [*series[:-1], seen["observed"]]:
                reading = detector.update(value)
            assert seen == {"observed": seen["observed"], "expected": reading.expected, "lower": reading.lower,
                            "upper": reading.upper, "score": reading.score, "learning": False, "period_s": 0.0,
                            "bucket": seen["bucket"]}
            assert seen["observed"] <= series[-1]
            # The evaluation's window ends when the runner looked, within the bucket after this one.
            window_end = _epoch(note["window"]["end"])
            assert end <= window_end < end + 10 and _epoch(note["window"]["start"]) == window_end - 10
            shown = (f"{seen['score']:.0f}: {seen['observed']:g} where {seen['expected']:g} was expected "
                     f"(usual {seen['lower']:g} to {seen['upper']:g})")
            assert note == {
                **{k: note[k] for k in ("alert", "key", "since", "at", "query", "events", "dashboard", "discover")
                   if k in note},
                "rule": STORM_RULE, "group": "*", "group_by": None, "state": state, "value": seen["score"],
                "threshold": 40.0, "severity": "warning", "labels": {}, "groups": {},
                "window": {**note["window"], "time_field": "@timestamp"},
                "index": f"logs-modelregistry.retrieval-{namespace}",
                "message": (f"{STORM_RULE}: retrievals, anomaly score {shown} (bound 40.00)" if state == "firing"
                            else note["message"]),
                "shown": {"group": "*", "threshold": "40.00", "value": shown}, "event": seen}, note
            assert note["alert"] == fired["alert"] and note["at"] >= note["since"]
            assert shown in note["message"]
        # It fired on a bucket of the storm, far above the band, and resolved on an ordinary one after it.
        fired_seen, resolved_seen = fired["event"], resolved["event"]
        assert storm_started - 10 <= _epoch(fired_seen["bucket"]["start"]) <= storm_stopped
        assert fired_seen["observed"] > fired_seen["upper"] and fired["value"] >= 40
        runaway = sum(1 for t in truth if t["type"] == "request" and t["client"] == STORM_CLIENT
                      and t["op"] == "get_by_alias" and _epoch(fired_seen["bucket"]["start"]) <= t["t"]
                      < _epoch(fired_seen["bucket"]["end"]))
        assert runaway > fired_seen["upper"]  # the runaway client alone is beyond the band
        assert _epoch(resolved_seen["bucket"]["start"]) >= storm_stopped - 1 and resolved["value"] < 25
        assert resolved_seen["observed"] <= resolved_seen["upper"]
        assert {r["model"] for r in operations if r["client"] == STORM_CLIENT} == {STORM_MODEL}
        assert timeline.index("runaway client started") < timeline.index(f"{STORM_RULE} firing") \
            < timeline.index("runaway client stopped") < timeline.index(f"{STORM_RULE} resolved")
        assert [(a["rule"], a["state"]) for a in summary["anomalies"]] == [(STORM_RULE, "firing"),
                                                                           (STORM_RULE, "resolved")]
        assert "the runaway client's storm and nothing else" in result.stdout

        # The registry's past: every line written was shipped (the anomaly rules' history).
        history_log = workdir / "registry" / "history" / "access.log.1"
        assert summary["history"]["lines"] == history_log.read_bytes().count(b"\n") \
            == summary["elasticsearch"]["history_events"] > 1000
        assert summary["history"]["hours"] == 5

        others = {n["rule"] for n in notes} - set(INCIDENT_RULES) - {"host-disk-filling", "champion-regression",
                                                                    "champion-stale-usage", STORM_RULE}
        assert not others, notes
        assert timeline.index("registry stopped") < timeline.index("registry-down firing") \
            < timeline.index("registry restarted") < timeline.index("registry-down resolved")
        assert timeline.index("revoked token in use") < timeline.index("registry-error-ratio firing") \
            < timeline.index("registry-error-ratio resolved")
        assert summary["minutes"] < 10

        # The summary on screen says the same.
        assert f"{len(operations)} operations" in result.stdout
        assert "every action matches too: yes" in result.stdout
        assert "demo down" in result.stderr or "demo-down" in result.stderr

        # What the demo offers at the end: `regwatch top` over the stack it left running.
        top = subprocess.run([*CLI, "top", "--json", "--namespace", namespace], env=_env(es_url, tmp_path),
                             capture_output=True, text=True, timeout=60)
        view = json.loads(top.stdout)
        assert view["calls"] > 0 and view["per_minute"]["retrieval"] and view["availability"]["mlflow"]["up_now"]
    finally:
        ports = json.loads((workdir / "stack.json").read_text())["ports"] if (workdir / "stack.json").exists() else {}
        down = subprocess.run([*CLI, "demo", "down", "--workdir", str(workdir)], env=_env(es_url, tmp_path),
                              capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "workload-traffic" in down.stderr and "nginx" in down.stderr and "rule-runner" in down.stderr
    assert not [n for n in Processes(workdir).names() if Processes(workdir).running(n)]
    for port in (ports["registry"], ports["mlflow"], ports["receiver"], ports["sink"], ports["rules_metrics"]):
        wait_for(lambda p=port: _closed(p), 10, f"port {port} closed after demo down")


def test_the_gateway_refuses_a_revoked_token_and_the_burst_records_each_refusal(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Incident 2 is a client whose token nginx has revoked: 401 before MLflow, recorded as sent.
    The same client without the token (normal traffic) is answered by MLflow."""
    from regwatch.demo.ports import free_port
    from regwatch.demo.registry import Registry
    from regwatch.demo.wire import TAG_ENV
    from regwatch.demo.workload import Workload, read_truth

    for name in ("MLFLOW_TRACKING_AUTH", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", TAG_ENV):  # the Workload sets them
        monkeypatch.setenv(name, "")
    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    processes = Processes(tmp_path)
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry", processes, free_port(), free_port(), {})
    if registry.front != "nginx":
        pytest.skip("nginx is not installed")
    registry.start()
    try:
        workload = Workload(registry.url, tmp_path / "truth.jsonl", "gateway")
        try:
            workload.seed_models(("fraud-detector",))
            seeded = len(read_truth(tmp_path / "truth.jsonl"))
            workload.traffic(1.0, clients=2, failing=True, pace_s=0.05)
            workload.traffic(1.0, clients=1)
        finally:
            workload.close()
        # the servers the fluent API reads are the test process's again (later tests' clients)
        assert {name: os.environ.get(name) for name in before} == before
    finally:
        processes.stop_all()
    truth = read_truth(tmp_path / "truth.jsonl")[seeded:]
    burst = [r for r in truth if r["type"] == "request" and r["client"] == 2 and r["status"] == 401]
    refused = [r for r in truth if r["type"] == "operation" and r["error"] == "UNAUTHENTICATED"]
    assert len(burst) >= 5 and len(refused) >= len(burst)
    lines = (tmp_path / "registry" / "access.log").read_text().splitlines()
    assert sum(1 for line in lines if '" 401 ' in line) == len(refused)
    last_refused = max(i for i, line in enumerate(lines) if '" 401 ' in line)
    assert any('" 200 ' in line for line in lines[last_refused:]), "normal traffic after the burst is answered"


def test_without_nginx_incident_2_is_skipped_and_says_why(tmp_path: Path) -> None:
    """MLflow alone cannot refuse a revoked token: the demo says incident 2 needs nginx and runs
    nothing for it (no workload, no wait for a notification that cannot come)."""
    from types import SimpleNamespace

    from regwatch.demo.scenario import Scenario, Timings

    said: list[str] = []
    reporter = SimpleNamespace(step=said.append, done=said.append)
    stack = SimpleNamespace(workdir=tmp_path, registry=SimpleNamespace(front="gunicorn", url="http://127.0.0.1:1"),
                            processes=None)
    scenario = Scenario(stack, "r", Timings(), reporter)  # type: ignore[arg-type]
    scenario.incident_revoked_token()
    assert len(said) == 1 and "incident 2 skipped: it needs nginx" in said[0]
    assert [t["what"] for t in scenario.timeline] == ["incident 2 skipped: no nginx"]


def test_ctrl_c_stops_everything_and_a_stale_pid_is_never_signalled(es_url: str, namespace: str,
                                                                    tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    # Started as from a non-interactive shell's background (`make test &`): SIGINT inherited as
    # ignored. The demo must honour Ctrl-C anyway (it did not: CI found it).
    process = subprocess.Popen([*CLI, "demo", "up", "--workdir", str(workdir), "--namespace", namespace],
                               env=_env(es_url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    processes = Processes(workdir)
    try:
        def started() -> bool:
            if process.poll() is not None:  # demo up ended before its services ran: say why, at once
                raise AssertionError(f"demo up exited {process.returncode}: {process.stderr.read()[-2000:]}")
            return processes.running("rule-runner") is not None

        wait_for(started, 180, "the demo's services running")
        pids = {name: processes.running(name) for name in processes.names()}
        assert {"mlflow", "nginx", "shipper", "probe", "rule-runner", "audit-receiver", "webhook-sink"} <= set(pids)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:  # pass or fail, nothing of the demo is left running
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
            subprocess.run([*CLI, "demo", "down", "--workdir", str(workdir)], env=_env(es_url, tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "everything the demo started is stopped" in stderr
    for name, pid in pids.items():
        assert pid is not None and not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still runs"

    # A stale pid file from a crashed run names a process that is not ours: never signalled.
    (workdir / "pids").mkdir(exist_ok=True)
    (workdir / "pids" / "stale.pid").write_text(json.dumps({"pid": os.getpid(), "start": 1}))
    down = subprocess.run([*CLI, "demo", "down", "--workdir", str(workdir)], env=_env(es_url, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "nothing of the demo was running" in down.stderr
    time.sleep(0.1)
    assert Path(f"/proc/{os.getpid()}").exists()


def test_the_webhook_sink_keeps_hostile_bodies_and_refuses_huge_ones(tmp_path: Path) -> None:
    import http.client
    import threading
    import urllib.request

    from regwatch.demo.webhook_sink import MAX_BODY, received, serve

    out = tmp_path / "n.jsonl"
    server = serve("127.0.0.1", 0, out)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/notify"
    try:
        for body in (b'{"rule": "r\\u0000", "n": 1e999999}', b"\xff\xfe not json \x00", b'{"a": [' * 50 + b"]"):
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as answer:
                assert answer.status == 200
        # Refused on its Content-Length alone, before a byte of the body is read.
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        connection.putrequest("POST", "/notify")
        connection.putheader("Content-Length", str(MAX_BODY + 1))
        connection.endheaders()
        assert connection.getresponse().status == 413
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    records = received(out)
    assert len(records) == 3
    assert records[0]["payload"]["rule"] == "r\x00" and records[1]["payload"]["unparsed"].endswith("not json \x00")
    assert "unparsed" in records[2]["payload"]


def test_stopping_the_demo_waits_once_not_once_per_process(tmp_path: Path) -> None:
    """Ctrl-C during an incident timed out in CI: each of a dozen processes was given its 20 s in
    turn. Now all get SIGTERM at once and share one deadline before SIGKILL."""
    from regwatch.demo.processes import Processes, Spec

    processes = Processes(tmp_path)
    stubborn = ["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"]  # ignores SIGTERM
    pids = [processes.start(Spec(f"stubborn-{i}", stubborn)) for i in range(4)]
    time.sleep(0.3)  # the traps are set
    started = time.monotonic()
    assert sorted(processes.stop_all(timeout_s=1.0)) == [f"stubborn-{i}" for i in range(4)]
    took = time.monotonic() - started
    assert took < 3.0, f"{took:.1f} s: the processes were waited for one after another"
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert processes.names() == []
