"""``regwatch demo``: the whole system living through two incidents, on this machine.

``demo up`` starts a real MLflow behind a real nginx, regwatch's services, and a workload; stops
the registry and has a client with a revoked token keep calling (refused with 401 by the demo's
nginx); prints what was done against what Elasticsearch holds.
``demo down`` stops everything it started. ``demo workload`` is the generator on its own, for any
MLflow; ``demo webhook-sink`` the notification receiver the demo's rules post to.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from regwatch.cli.common import elasticsearch_errors, err, fail, http_url, load

app = typer.Typer(no_args_is_help=True,
                  help="The whole system through its incidents on this machine: up, down, workload, history, "
                       "webhook-sink.")
out = Console()
WORKDIR = Path(".regwatch/demo")


class _RichReporter:
    def __init__(self, status: Any) -> None:
        self.status = status
        self.started = time.monotonic()

    def _t(self) -> str:
        return f"[dim]{time.monotonic() - self.started:6.1f}s[/dim]"

    def step(self, text: str) -> None:
        self.status.update(f"{text}")
        err.print(f"{self._t()} {text}", highlight=False)

    def done(self, text: str) -> None:
        err.print(f"{self._t()} [green]✓[/green] {text}", highlight=False)


@app.command("up")
def up(
    workdir: Annotated[Path, typer.Option(help="where the registry, services and their logs live")] = WORKDIR,
    namespace: Annotated[str, typer.Option(help="data stream namespace")] = "demo",
    quick: Annotated[bool, typer.Option("--quick", help="a shorter story (the test's)")] = False,
    nginx: Annotated[bool, typer.Option(help="nginx in front of MLflow when it is installed")] = True,
    stop: Annotated[bool, typer.Option("--stop/--keep", help="stop everything after the summary "
                                                              "(default: keep it running with light traffic)")] = False,
) -> None:
    """Registry, services, workload, two incidents, and the summary."""
    import secrets
    import shutil

    from pipeline import datastreams, templates
    from regwatch.config import valid_namespace
    from regwatch.demo.processes import Processes, Spec
    from regwatch.demo.scenario import STORM_RULE, Scenario, ScenarioError, Timings
    from regwatch.demo.stack import Stack, regwatch_argv
    from regwatch.demo.summary import summarise
    from regwatch.esclient import client_from_config
    from rules.state import StateStore

    try:
        namespace = valid_namespace(namespace)
    except ValueError as exc:
        fail(f"--namespace {namespace!r}: {exc}", code=2)
    settings = load(None)
    es = client_from_config(settings)
    stopped = Processes(workdir).stop_all()
    if stopped:
        err.print(f"stopped the previous demo's {', '.join(stopped)}")
    try:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
    except OSError as exc:
        fail(f"--workdir {workdir}: {exc.strerror or exc}", code=2)
    with elasticsearch_errors(settings):
        templates.install(es)
        datastreams.create_empty(es, namespace)
        es.indices.delete(index=StateStore(es, namespace).index, ignore_unavailable=True)  # no alert carried over
    stack = Stack(workdir, namespace, use_nginx=nginx)
    stack.write_config()
    run_id = secrets.token_hex(4)
    timings = Timings(warmup_s=15, burst_s=6, burst_clients=5, promote_s=30) if quick else Timings()
    # The registry's past ends before the run starts: what the summary counts from the start is the run's.
    stack.write_history(timings.clients / timings.pace_s, timings.history_h)
    started = time.time()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the stack like Ctrl-C
    # Started in the background of a non-interactive shell (CI: `cmd &`), SIGINT arrives ignored
    # and Python then leaves it so: Ctrl-C and `kill -INT` must still stop everything.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with err.status("starting") as status:
            reporter = _RichReporter(status)
            reporter.step(f"Elasticsearch {settings.elasticsearch.hosts[0]}: templates and data streams of "
                          f"'{namespace}' ready")
            reporter.step(f"starting MLflow{' behind nginx' if stack.registry.front == 'nginx' else ''} "
                          f"(its output: {stack.processes.logs})")
            stack.start_registry()
            reporter.done(f"registry at {stack.registry.url} ({stack.registry.front} access log)")
            reporter.step("starting the audit receiver, the shipper, the probe and the rule runner")
            stack.start_services()
            reporter.done("services up: audit receiver (webhook registered in MLflow), shipper, probe, rule runner")
            scenario = Scenario(stack, run_id, timings, reporter)
            scenario.started = started
            scenario.run()
        with elasticsearch_errors(settings):
            summary = summarise(es, namespace, run_id, started, scenario.truth, stack.notifications,
                                scenario.timeline, stack.registry.front, scenario.history)
    except (ScenarioError, RuntimeError) as exc:
        stack.processes.stop_all()
        fail(f"{exc}")
    except KeyboardInterrupt:
        stack.processes.stop_all()
        err.print("interrupted: everything the demo started is stopped")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    summary["minutes"] = round((time.time() - started) / 60, 2)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    _render(summary, stack, settings.elasticsearch.hosts[0], namespace)
    if stop:
        stack.processes.stop_all()
        err.print("stopped everything the demo started")
    else:
        stack.processes.start(Spec("workload-traffic", regwatch_argv(
            "demo", "workload", "--tracking-uri", stack.registry.url, "--truth", str(workdir / "background.jsonl"),
            "--run-id", "background", "--phase", "traffic", "--duration", "86400", "--clients", str(timings.clients),
            "--pace", str(timings.pace_s))))  # the team's ordinary rate: nothing unusual while it runs
        err.print(f"still running with light traffic: [bold]regwatch top --namespace {namespace}[/bold] to watch, "
                  "[bold]make demo-down[/bold] to stop", highlight=False)
    storm_alone = [a["rule"] for a in summary["anomalies"] if a["state"] == "firing"] == [STORM_RULE]
    if not summary["match"] or summary["audit_missing_models"] or not summary["downloads_match"] or not storm_alone:
        raise typer.Exit(1)


def _render(summary: dict[str, Any], stack: Any, es_url: str, namespace: str) -> None:
    from regwatch.demo.scenario import STORM_RULE
    from regwatch.demo.summary import queries

    work, stored = summary["workload"], summary["elasticsearch"]
    out.rule(f"regwatch demo: {summary['minutes']} min")
    table = Table("kind", "requests the workload made", f"events in {stored['pattern']}", "",
                  title=f"{work['operations']} operations by {len(work['operations_by_type'])} kinds of client call "
                        f"({work['operations_failed']} failed), {work['requests']} HTTP requests")
    for kind, counts in summary["kinds"].items():
        same = counts["workload"] == counts["elasticsearch"]
        table.add_row(kind, str(counts["workload"]), str(counts["elasticsearch"]),
                      "[green]=[/green]" if same else "[red]≠[/red]")
    out.print(table)
    out.print(f"every action matches too: {'[green]yes[/green]' if summary['match'] else '[red]NO[/red]'}; "
              f"dead letters: {stored['deadletters']}; other clients (probe, webhook registration): "
              + ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in stored["other_clients"].items()))
    downloads = summary["workload"]["downloads_by_version"]
    named = stored["files_attribution"]
    out.print(f"models downloaded, per version: {sum(downloads.values())} by the workload, "
              f"{sum(stored['downloads_by_version'].values())} in Elasticsearch (`regwatch downloads`; their "
              f"files named: {', '.join(f'{escape(k)} {v}' for k, v in sorted(named.items()))}): "
              + ("[green]the same per version[/green]" if summary["downloads_match"] else "[red]NOT the same[/red]")
              + "; " + ", ".join(f"{escape(k)} {v}" for k, v in downloads.items()))
    missing = summary["audit_missing_models"]
    out.print(f"audit trail: {stored['audit_events']} events naming "
              + ", ".join(f"{escape(m)} ({n})" for m, n in stored["audit_models"].items())
              + (f"; [red]missing {escape(', '.join(missing))}[/red]" if missing
                 else "; every model the workload wrote is named"))
    alerts = Table("after", "rule", "group", "state", title="notifications received by the demo's webhook")
    for alert in summary["alerts"]:
        colour = "red" if alert["state"] == "firing" else "green"
        alerts.add_row(f"{alert['after_s']:.1f} s", Text(alert["rule"] or ""), Text(alert["group"] or ""),
                       f"[{colour}]{alert['state']}[/{colour}]")
    out.print(alerts)
    past = summary["history"]
    if past:
        out.print(f"the registry's past: {past['lines']} requests over {past['hours']:.0f} hours, written in "
                  f"{past['written_s']} s and shipped in {past['shipped_s']} s ({stored['history_events']} events)",
                  highlight=False)
    for anomaly in summary["anomalies"]:
        seen = (f": {anomaly['observed']:g} where {anomaly['expected']:g} was expected (usual {anomaly['lower']:g} "
                f"to {anomaly['upper']:g}), score {anomaly['score']:.0f}") if anomaly["observed"] is not None else ""
        out.print(f"anomaly: {anomaly['rule']} {anomaly['state']} after {anomaly['after_s']:.1f} s{seen}",
                  highlight=False, markup=False)
    firing = [a["rule"] for a in summary["anomalies"] if a["state"] == "firing"]
    out.print(f"anomaly notifications: {len(firing)} firing ({', '.join(firing) or 'none'}): "
              + ("[green]the runaway client's storm and nothing else[/green]" if firing == [STORM_RULE]
                 else "[red]not the storm alone[/red]"))
    out.print("timeline: " + "; ".join(f"{t['after_s']:.0f} s {t['what']}" for t in summary["timeline"]),
              highlight=False)
    out.print(f"payloads: {stack.notifications}  summary: {stack.workdir / 'summary.json'}  "
              f"logs: {stack.processes.logs}", highlight=False, markup=False)
    out.print("dashboards: [bold]KIBANA_URL=... regwatch kibana import[/bold] (kibana/regwatch.ndjson) against your "
              "Kibana, or the compose stack ([bold]docker compose up -d[/bold]); Grafana: grafana/regwatch.json; "
              f"Prometheus /metrics on ports {stack.ports.shipper_metrics}, {stack.ports.probe_metrics}, "
              f"{stack.ports.rules_metrics}", highlight=False)
    for title, command in queries(es_url, namespace):
        out.print(f"[dim]# {title}[/dim]")
        out.print(command, highlight=False, soft_wrap=True, markup=False)


@app.command("down")
def down(workdir: Annotated[Path, typer.Option(help="the demo's work folder")] = WORKDIR) -> None:
    """Stop everything ``demo up`` started (the registry, nginx, regwatch's services, the workload)."""
    from regwatch.demo.processes import Processes

    stopped = Processes(workdir).stop_all()
    err.print(f"stopped {', '.join(stopped)}" if stopped else "nothing of the demo was running")


@app.command("workload")
def workload(
    tracking_uri: Annotated[str, typer.Option(help="the MLflow tracking server")],
    truth: Annotated[Path, typer.Option(help="JSON lines: every operation and every request, appended")],
    run_id: Annotated[str, typer.Option(help="tag in every request's User-Agent: run=<id>")] = "manual",
    phase: Annotated[str, typer.Option(
        help="seed (models, versions, aliases), traffic (the mix), burst (calls with a revoked bearer token: "
             "refused with 401 where a gateway revoked it, as the demo's nginx does), promote (a worse version of "
             "fraud-detector becomes champion; CLIENTS replicas keep pulling the one it replaced for DURATION, "
             "as many load the champion), rollout (the team's day starting: each model's champion loaded once, a "
             "training script registering a version), "
             "storm (one runaway client loading the champion of churn-predictor "
             "in a tight loop for DURATION)")
    ] = "traffic",
    duration: Annotated[float, typer.Option(help="seconds of traffic or burst")] = 30.0,
    clients: Annotated[int, typer.Option(min=1, max=64, help="concurrent clients")] = 4,
    pace: Annotated[float, typer.Option(min=0, help="seconds each client waits between operations")] = 0.0,
    seed: Annotated[int, typer.Option(help="the clients' choices: the same seed makes the same operations")] = 7,
) -> None:
    """Concurrent MLflow clients doing what a team does, recording every operation and request."""
    import math
    import threading

    from regwatch.demo.workload import STORM_MODEL, Workload

    if phase not in ("seed", "traffic", "burst", "promote", "rollout", "storm"):
        fail(f"--phase {phase!r}: one of seed, traffic, burst, promote, rollout, storm", code=2)
    http_url("--tracking-uri", tracking_uri, "http://127.0.0.1:5000")
    if not (math.isfinite(duration) and duration >= 0):
        fail(f"--duration: {duration} is not a number of seconds", code=2)
    if not math.isfinite(pace):
        fail(f"--pace: {pace} is not a number of seconds", code=2)
    _quiet_mlflow()
    from mlflow.exceptions import MlflowException

    generator = Workload(tracking_uri, truth, run_id, seed=seed)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: generator.stop.set())
    try:
        if phase == "seed":
            generator.seed_models()
            err.print(f"seeded {len(generator.models)} models at {tracking_uri}")
        elif phase == "promote":
            previous, new = generator.promote_worse()
            done = generator.replicas("fraud-detector", previous, duration, clients, pace)
            err.print(f"champion of fraud-detector moved from version {previous} to the worse {new}; "
                      f"{done} downloads of version {previous} by {clients} replicas still pinned to it")
        elif phase == "rollout":
            err.print(f"{generator.rollout()} models loaded at {tracking_uri}")
        elif phase == "storm":
            done = generator.storm(STORM_MODEL, duration)
            err.print(f"{done} loads of {STORM_MODEL} by one runaway client against {tracking_uri}")
        else:
            done = generator.traffic(duration, clients, failing=phase == "burst", pace_s=pace)
            err.print(f"{done} operations ({phase}) against {tracking_uri}")
    except (RuntimeError, MlflowException) as exc:  # MLflow away or refusing
        fail(" ".join(str(exc).split())[:500])
    finally:
        generator.close()


@app.command("history")
def history(
    out_file: Annotated[Path, typer.Option("--out", help="the access log to write (nginx's format), for a shipper "
                                                         "input to read")],
    days: Annotated[float, typer.Option(min=0.01, max=60, help="how far back the traffic goes, ending now")] = 14.0,
    rate: Annotated[float, typer.Option(min=0.001, max=100, help="operations a second in working hours; a tenth "
                                                                 "of it at night, a third on weekends")] = 0.5,
    seed: Annotated[int, typer.Option(help="the same seed writes the same traffic")] = 7,
) -> None:
    """Weeks of a team's past registry traffic, for the anomaly rules to learn from before they judge.

    The requests the workload makes, with their daily and weekly rhythm and a nightly training job
    registering a version of every model, as nginx logs them with their past times. Add the file
    to a shipper's inputs (format nginx): it is shipped at the shipper's start, and the anomaly
    rules (rules/builtin/anomaly) learn from it at once instead of during their first day."""
    from regwatch.demo import history as past

    started = time.monotonic()
    try:
        lines = past.write(out_file, time.time(), days * 86400, rate, seed)
    except OSError as exc:
        fail(f"--out {out_file}: {exc.strerror or exc}", code=2)
    err.print(f"{lines} requests of {days:g} days written to {out_file} in {time.monotonic() - started:.1f} s")


def _quiet_mlflow() -> None:
    """MLflow's own chatter (run links, warnings) goes to the log the demo keeps, not the screen."""
    import logging
    import os
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


@app.command("webhook-sink")
def webhook_sink(
    out_file: Annotated[Path, typer.Option("--out", help="JSON lines: every notification received")],
    listen: Annotated[str, typer.Option(help="host:port")] = "127.0.0.1:8687",
) -> None:
    """A webhook receiver that writes every notification to a file (the demo's Slack)."""
    from regwatch.demo.webhook_sink import serve

    host, _, port = listen.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(f"--listen {listen!r}: expected host:port", code=2)
    try:
        server = serve(host, int(port), out_file)
    except OSError as exc:
        fail(f"--listen {listen}: {exc.strerror or exc}")
    import threading

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
