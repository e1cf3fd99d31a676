"""The ``regwatch`` command line: one front door to every room."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import structlog
import typer
from rich.console import Console
from rich.text import Text

from regwatch import localnode
from regwatch.config import redact_url
from regwatch.logging import configure as configure_logging

# Tracebacks never show locals (a bind failure once printed the webhook secret that way).
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False,
                  pretty_exceptions_show_locals=False)
es_app = typer.Typer(no_args_is_help=True, help="A local single-node Elasticsearch for tests and the demo.")
app.add_typer(es_app, name="es")
rules_app = typer.Typer(no_args_is_help=True, help="Alert rules over the event data streams.")
app.add_typer(rules_app, name="rules")
kibana_app = typer.Typer(no_args_is_help=True, help="regwatch's Kibana dashboards, data views and searches.")
app.add_typer(kibana_app, name="kibana")
receiver_app = typer.Typer(help="MLflow webhooks, verified and written as an audit log the shipper follows.")
app.add_typer(receiver_app, name="audit-receiver")
err = Console(stderr=True)


_LOG_LEVEL: dict[str, str | None] = {"level": None}


@app.callback()
def _root(log_level: Annotated[Optional[str], typer.Option(
        help="structlog level: DEBUG, INFO, WARNING, ERROR (default: INFO for daemons, WARNING otherwise)")] = None,
) -> None:
    if log_level is not None and log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        _fail(f"--log-level: {log_level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL", code=2)
    _LOG_LEVEL["level"] = log_level.upper() if log_level else None
    configure_logging(_LOG_LEVEL["level"] or "WARNING")


def _daemon_logging(json_lines: bool = True) -> None:
    """Daemons log at INFO unless ``--log-level`` said otherwise."""
    configure_logging(_LOG_LEVEL["level"] or "INFO", json=json_lines)


def _es_warnings(settings) -> None:
    for warning in settings.elasticsearch.warnings():
        err.print(Text.assemble(("warning: ", "yellow"), warning), highlight=False)


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, the message taken as plain text (a YAML error may hold ``[...]``)."""
    err.print(Text.assemble(("error: ", "red"), " ".join(message.split("\n"))), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@es_app.command("up")
def es_up() -> None:
    """Start (or reuse) the node: ES_URL, else Docker, else the official zip from Maven Central."""
    started = time.monotonic()
    try:
        if err.is_terminal:
            with err.status("Elasticsearch") as status:
                node = localnode.up(progress=lambda msg: status.update(msg))
        else:
            node = localnode.up(progress=lambda msg: err.print(msg, highlight=False))
    except localnode.NodeError as exc:
        _fail(str(exc))
    verb = "started" if node.started else "reused"
    err.print(f"{verb} ({node.source}) in {time.monotonic() - started:.1f}s")
    typer.echo(redact_url(node.url))


@es_app.command("down")
def es_down() -> None:
    """Stop the node that `regwatch es up` started (and nothing else)."""
    stopped = localnode.down(progress=lambda msg: err.print(msg))
    err.print("stopped" if stopped else "nothing to stop")


@es_app.command("status")
def es_status() -> None:
    """Where the node is and its cluster health; exit 1 when it does not answer."""
    info = localnode.status()
    info["url"] = redact_url(info["url"])
    typer.echo(json.dumps(info, indent=2))
    if not info.get("health"):
        raise typer.Exit(1)


@app.command()
def setup(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    retention: Annotated[str, typer.Option(help="data stream retention, '' for none")] = "90d",
) -> None:
    """Install the index templates of every regwatch data stream (idempotent)."""
    from pipeline import templates
    from regwatch.esclient import client_from_config

    settings = _load(config)
    _es_warnings(settings)
    client = client_from_config(settings)
    with _elasticsearch_errors(settings):
        installed = templates.install(client, retention=retention or None)
    err.print(f"installed {len(installed)} templates")


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="log files to parse ('-' for stdin)")],
    format: Annotated[str, typer.Option("--format", "-f", help="nginx, nginx-json, gunicorn, uvicorn, databricks-audit, cloudtrail, audit")],
    routes: Annotated[Optional[Path], typer.Option(help="route table YAML replacing the built-in one")] = None,
    namespace: Annotated[str, typer.Option(help="data stream namespace")] = "default",
    validate: Annotated[bool, typer.Option(help="check each document against the event model")] = False,
    keep_original: Annotated[bool, typer.Option(help="keep the raw line in event.original")] = False,
) -> None:
    """Print, one JSON line each, the documents that would be indexed (no Elasticsearch)."""
    from collections import Counter

    from parsers import FORMATS, LineParser, ParseContext
    from parsers.events import validate_document
    from parsers.routes import RouteTableError, load_table, Router

    if format not in FORMATS:
        err.print(f"[red]error:[/red] unknown format {format!r}; one of: {', '.join(FORMATS)}")
        raise typer.Exit(2)
    try:
        router = Router(load_table(routes)) if routes else None
    except RouteTableError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    from pipeline.interpreter import tune_interpreter

    parser = LineParser(ParseContext(namespace=namespace, format=format, keep_original=keep_original), router)
    tune_interpreter()  # the shipper's hot-path settings: rare garbage collections
    counts: Counter[str] = Counter()
    out = sys.stdout.buffer
    for path in files:
        try:
            stream = sys.stdin.buffer if str(path) == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            _fail(f"{path}: {exc.strerror or exc}", code=2)
        with stream:
            block: list[bytes] = []
            for line in stream:
                doc, encoded = parser.parse_encoded(line)
                if validate:
                    validate_document(doc)
                counts[doc["data_stream"]["dataset"]] += 1
                block.append(encoded)
                if len(block) == 128:  # larger joins cost more than they save (fresh pages each)
                    out.write(b"".join(block))
                    block.clear()
            out.write(b"".join(block))
    out.flush()
    total = sum(counts.values())
    summary = " ".join(f"{kind.removeprefix('modelregistry.')}={counts[kind]}" for kind in sorted(counts))
    err.print(f"lines={total} {summary}", highlight=False, markup=False)


@app.command()
def ship(
    config: Annotated[Path, typer.Option("--config", "-c", help="regwatch YAML config")],
    once: Annotated[bool, typer.Option("--once", help="read every input to its end, index, checkpoint, exit")] = False,
    log_json: Annotated[bool, typer.Option("--log-json/--log-console", help="structlog JSON lines")] = True,
) -> None:
    """The log shipper daemon: follow the inputs and index every line exactly once."""
    from parsers.routes import RouteTableError
    from pipeline.checkpoint import CheckpointError
    from pipeline.shipper import ShipperFailed
    from regwatch.ship import build_shipper, install_signals

    settings = _load(config)
    _daemon_logging(log_json)
    _es_warnings(settings)
    try:
        shipper = build_shipper(settings, config)
    except (RouteTableError, CheckpointError) as exc:
        _fail(str(exc))
    install_signals(shipper)
    if settings.metrics_port and not once:
        try:
            shipper.metrics.serve(settings.metrics_port)
        except OSError as exc:
            _fail(f"{config}: metrics_port: cannot listen on 127.0.0.1:{settings.metrics_port}: {exc.strerror or exc}")
    try:
        if once and sys.stderr.isatty():
            summary = _run_with_progress(shipper, settings)
        else:
            summary = shipper.run(once=once)
    except CheckpointError as exc:
        _fail(str(exc))
    except ShipperFailed as exc:
        _fail(f"shipping stopped: {exc} (acknowledged lines are checkpointed; a restart resumes after them)")
    typer.echo(summary.line())


def _run_with_progress(shipper, settings):
    import glob
    import os

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = sum(os.path.getsize(p) for i in settings.inputs for pat in i.paths for p in glob.glob(pat)
                if os.path.isfile(p))
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("shipping", total=total)
        shipper.progress = lambda n: progress.advance(task, n)
        return shipper.run(once=True)


@app.command()
def status(
    config: Annotated[Path, typer.Option("--config", "-c", help="regwatch YAML config")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file")] = False,
) -> None:
    """Each known file: its path, acknowledged offset, size, and how far behind it is."""
    import os

    from pipeline.checkpoint import CheckpointStore
    from pipeline.identity import fingerprint

    from pipeline.checkpoint import CheckpointError

    settings = _load(config)
    try:
        store = CheckpointStore(settings.checkpoint_file)
    except CheckpointError as exc:
        _fail(str(exc))
    rows = []
    for position in sorted(store.all(), key=lambda p: p.path):
        size = None
        try:
            with open(position.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                same_file = (st.st_dev, st.st_ino) == (position.identity.device, position.identity.inode)
                if same_file and fingerprint(handle.read(1024)) == position.identity.fingerprint:
                    size = st.st_size
        except OSError:
            pass
        rows.append((position.path, position.offset, size))
    if as_json:
        for path, offset, size in rows:
            behind = None if size is None else max(0, size - offset)
            typer.echo(json.dumps({"path": path, "offset": offset, "size": size, "behind": behind}))
        return
    from rich.table import Table

    table = Table("file", "offset", "size", "behind")
    for path, offset, size in rows:
        behind = "rotated away" if size is None else str(max(0, size - offset))
        table.add_row(path, str(offset), "-" if size is None else str(size), behind)
    Console().print(table)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the MLflow server keeps its data and logs")] = Path(".regwatch/demo"),
    loads: Annotated[int, typer.Option(help="model loads per model in the workload")] = 3,
    namespace: Annotated[str, typer.Option(help="data stream namespace")] = "demo",
) -> None:
    """A real MLflow server driven by the real MLflow client; its access log shipped and summarised."""
    import shutil

    from parsers import streams
    from regwatch.config import Config
    from regwatch.demo import mlflow_server, run_workload
    from regwatch.esclient import client_from_config
    from regwatch.ship import build_shipper

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    err.print(f"starting an MLflow server (work folder {workdir})")
    try:
        with mlflow_server(workdir) as (url, access_log):
            err.print(f"MLflow at {url}: running the registry workload with MlflowClient")
            truth = run_workload(url, workdir / "truth.jsonl", loads=loads)
    except RuntimeError as exc:
        _fail(str(exc))
    err.print(f"{len(truth)} client operations; shipping {access_log}")
    config = Config.model_validate({
        "namespace": namespace,
        "checkpoint_file": str(workdir / "checkpoints.json"),
        "metrics_port": None,
        "inputs": [{"paths": [str(access_log)], "format": "gunicorn", "service_environment": "demo"}],
    })
    summary = build_shipper(config).run(once=True)
    typer.echo(summary.line())
    client = client_from_config(config)
    pattern = streams.pattern(namespace)
    client.indices.refresh(index=pattern)
    response = client.search(index=pattern, size=0, aggs={
        "kinds": {"terms": {"field": "data_stream.dataset", "size": 10}},
        "models": {"filter": {"term": {"data_stream.dataset": "modelregistry.retrieval"}},
                   "aggs": {"top": {"terms": {"field": "modelregistry.model.name", "size": 5}}}},
    })
    kinds = {b["key"].removeprefix("modelregistry."): b["doc_count"] for b in response["aggregations"]["kinds"]["buckets"]}
    top = {b["key"]: b["doc_count"] for b in response["aggregations"]["models"]["top"]["buckets"]}
    typer.echo(f"in Elasticsearch ({pattern}): " + " ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    typer.echo("retrievals by model: " + " ".join(f"{k}={v}" for k, v in top.items()))


@receiver_app.callback(invoke_without_command=True)
def audit_receiver(
    ctx: typer.Context,
    log_file: Annotated[Path, typer.Option("--log", help="the audit log to append to")] = Path("/var/log/regwatch/mlflow-audit.log"),
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:8686",
    secret_env: Annotated[str, typer.Option(help="environment variable holding the webhook secret")] = "REGWATCH_WEBHOOK_SECRET",
    tolerance: Annotated[float, typer.Option(help="seconds a delivery's timestamp may be off")] = 300.0,
    max_body: Annotated[int, typer.Option(help="largest accepted body, bytes")] = 1024 * 1024,
    max_connections: Annotated[int, typer.Option(help="requests handled at once (503 beyond)")] = 100,
) -> None:
    """The receiver daemon: POST /mlflow/webhook, GET /health. SIGHUP reopens the log file."""
    if ctx.invoked_subcommand is not None:
        return
    import os
    import signal

    from parsers.mlflow_webhook import canonical_record
    from pipeline.receiver import AuditLog, Receiver, make_server

    _daemon_logging()
    secret = os.environ.get(secret_env, "")
    if not secret:
        _fail(f"no webhook secret: set {secret_env}")
    host, port = _listen_address(listen)
    if tolerance <= 0:
        _fail(f"--tolerance: {tolerance} is not a positive number of seconds", code=2)
    if max_body < 1:
        _fail(f"--max-body: {max_body} is not a positive number of bytes", code=2)
    if max_connections < 1:
        _fail(f"--max-connections: {max_connections} is not a positive number", code=2)
    try:
        audit_log = AuditLog(log_file)
    except OSError as exc:
        _fail(f"--log {log_file}: {exc.strerror or exc}")
    receiver = Receiver(audit_log, secret, canonical_record, tolerance_s=tolerance, max_body_bytes=max_body)
    server = make_server(receiver, host, port, max_connections=max_connections)
    try:  # bind here, so a port in use is one line naming it rather than uvicorn's log and exit
        sockets = [_bound_socket(host, port)]
    except OSError as exc:
        _fail(f"--listen {listen}: cannot listen: {exc.strerror or exc}")
    signal.signal(signal.SIGHUP, lambda *_: audit_log.reopen())
    err.print(f"listening on http://{host}:{port}/mlflow/webhook, writing {log_file}", markup=False, highlight=False)
    try:
        server.run(sockets=sockets)  # uvicorn handles SIGTERM and SIGINT: finishes requests, then stops
    finally:
        audit_log.close()


def _bound_socket(host: str, port: int):
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``: one line naming the value when it is not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        _fail(f"--listen: {listen!r} is not host:port (e.g. 127.0.0.1:8686)", code=2)
    return host.strip("[]"), int(port)


@receiver_app.command("register")
def audit_receiver_register(
    mlflow: Annotated[str, typer.Option("--mlflow", help="MLflow tracking server URL")],
    url: Annotated[str, typer.Option("--url", help="the receiver's URL as MLflow will call it")],
    name: Annotated[str, typer.Option(help="webhook name in MLflow")] = "regwatch-audit",
    secret_env: Annotated[str, typer.Option(help="environment variable holding the webhook secret")] = "REGWATCH_WEBHOOK_SECRET",
) -> None:
    """Create or update the MLflow webhook for every model-registry event, then test it."""
    import os

    from parsers.mlflow_webhook import REGISTRY_EVENTS

    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        _fail("mlflow is not installed: pip install 'regwatch[demo]'")
    secret = os.environ.get(secret_env, "")
    if not secret:
        _fail(f"no webhook secret: set {secret_env}")
    client = MlflowClient(mlflow)
    url = url.rstrip("/")
    if not url.endswith("/mlflow/webhook"):
        url += "/mlflow/webhook"
    try:
        existing = [w for w in client.list_webhooks() if w.name == name]
        if existing:
            webhook = client.update_webhook(existing[0].webhook_id, url=url, events=list(REGISTRY_EVENTS),
                                            secret=secret, status="ACTIVE")
            verb = "updated"
        else:
            webhook = client.create_webhook(name=name, url=url, events=list(REGISTRY_EVENTS), secret=secret,
                                            description="regwatch audit trail")
            verb = "created"
        result = client.test_webhook(webhook.webhook_id)
    except MlflowException as exc:
        hint = ""
        text = str(exc).lower()
        if "scheme" in text or "private" in text or "ssrf" in text or "not allowed" in text:
            hint = (" -- MLflow refuses plain-http or private-address receivers by default: start the MLflow "
                    "server with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and/or "
                    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true, or put the receiver behind https on a public address")
        _fail(f"MLflow refused the webhook: {exc}{hint}")
    err.print(f"{verb} webhook {webhook.webhook_id} -> {url} for {', '.join(REGISTRY_EVENTS)}")
    if not result.success:
        _fail(f"MLflow's test delivery failed: status={result.response_status} error={result.error_message} "
              "(for a private or plain-http receiver, start MLflow with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https "
              "and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true)")
    err.print(f"test delivery answered {result.response_status}")


@kibana_app.command("import")
def kibana_import(
    url: Annotated[str, typer.Option("--url", help="Kibana base URL", envvar="KIBANA_URL")] = "http://127.0.0.1:5601",
    space: Annotated[Optional[str], typer.Option(help="Kibana space")] = None,
    file: Annotated[Optional[Path], typer.Option(help="NDJSON to import (default: the shipped objects)")] = None,
) -> None:
    """Import (overwrite) the saved objects; report what was created, updated or failed."""
    import httpx

    from kibana.client import import_objects
    from kibana.objects import NDJSON

    payload = (file or NDJSON).read_bytes()
    try:
        report = import_objects(url, payload, space)
    except httpx.HTTPError as exc:
        _fail(f"Kibana import failed: {exc}")
    for label, names in (("created", report.created), ("updated", report.updated), ("failed", report.failed)):
        for name in names:
            typer.echo(f"{label:8} {name}")
    typer.echo(f"created={len(report.created)} updated={len(report.updated)} failed={len(report.failed)}")
    if not report.ok:
        raise typer.Exit(1)


@kibana_app.command("export")
def kibana_export(
    url: Annotated[str, typer.Option("--url", help="Kibana base URL", envvar="KIBANA_URL")] = "http://127.0.0.1:5601",
    space: Annotated[Optional[str], typer.Option(help="Kibana space")] = None,
    out: Annotated[Path, typer.Option(help="where to write the NDJSON")] = Path("regwatch-export.ndjson"),
) -> None:
    """Export regwatch's objects as edited in Kibana (dashboards and what they reference)."""
    import httpx

    from kibana.client import export_objects
    from kibana.objects import all_objects

    try:
        text = export_objects(url, [o for o in all_objects() if o["type"] in ("dashboard", "search")], space)
    except httpx.HTTPError as exc:
        _fail(f"Kibana export failed: {exc}")
    out.write_text(text)
    typer.echo(f"wrote {out} ({len(text.splitlines())} objects)")


@rules_app.command("validate")
def rules_validate(folder: Annotated[Path, typer.Argument(help="a folder of rule YAML files")]) -> None:
    """Check every rule file; errors name the file, the rule and the key."""
    from rules.model import RuleError, load_rules

    try:
        rules = load_rules(folder)
    except RuleError as exc:
        for line in str(exc).splitlines():
            err.print(f"[red]error:[/red] {line}", highlight=False)
        raise typer.Exit(1) from None
    typer.echo(f"{len(rules)} rules valid: " + ", ".join(r.name for r in rules))


@rules_app.command("run")
def rules_run(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    once: Annotated[bool, typer.Option("--once", help="one cycle, then exit")] = False,
) -> None:
    """The rule runner: evaluate due rules, notify, write alert history."""
    import signal
    import socket
    import threading

    from regwatch.esclient import client_from_config
    from rules.model import RuleError, check_notifiers, load_rules
    from rules.notify import DeliveryFailed
    from rules.query import check_queries
    from rules.runner import Runner
    from rules.state import StateStore

    settings = _load(config)
    _daemon_logging()
    _es_warnings(settings)
    try:
        rules = load_rules(settings.rules.folder)
        check_notifiers(rules, set(settings.rules.notifiers))
    except RuleError as exc:
        _fail(str(exc))
    for name, target in settings.rules.notifiers.items():
        try:
            target.check()
        except DeliveryFailed as exc:
            _fail(f"{config}: rules.notifiers.{name}: {exc}")
    client = client_from_config(settings)
    with _elasticsearch_errors(settings):
        store = StateStore(client, settings.namespace)
        store.ensure()
        problems = check_queries(client, rules, store.index)
    if problems:
        _fail("; ".join(problems))
    runner = Runner(client, rules, settings.namespace, dict(settings.rules.notifiers),
                    settings.rules.runner_id or socket.gethostname(), stale_after=settings.rules.stale_after_s,
                    stale_notify=list(settings.rules.stale_notify), kibana_url=settings.rules.kibana_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    every = min(rule.interval for rule in rules) if rules else 60.0
    import structlog

    log = structlog.get_logger("regwatch.rules")
    while True:
        try:
            report = runner.cycle()
        except Exception as exc:  # noqa: BLE001 - Elasticsearch away: the next cycle catches up
            log.warning("cycle_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if once:
                raise typer.Exit(1) from None
        else:
            typer.echo(f"evaluated={len(report.evaluated)} transitions={len(report.transitions)} "
                       f"sent={len(report.sent)} failed={len(report.failed)} silenced={len(report.silenced)}")
        if once or stop.wait(min(every, 10.0)):
            return


@rules_app.command("silence")
def rules_silence(
    rule: Annotated[str, typer.Argument(help="rule name, or * for every rule")],
    label: Annotated[Optional[list[str]], typer.Option(help="key=value the alert's labels must have")] = None,
    duration: Annotated[Optional[str], typer.Option("--for", help="how long, e.g. 2h")] = None,
    until_resolved: Annotated[bool, typer.Option(help="until the alert of --group resolves")] = False,
    group: Annotated[Optional[str], typer.Option(help="the alert's group (with --until-resolved)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the record")] = "",
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """Mute a rule's notifications for a while, or until an alert resolves."""
    from regwatch.esclient import client_from_config
    from rules.model import seconds
    from rules.runner import Runner

    if bool(duration) == until_resolved:
        _fail("give exactly one of --for DURATION and --until-resolved")
    labels = dict(item.split("=", 1) for item in (label or []))
    settings = _load(config)
    runner = Runner(client_from_config(settings), [], settings.namespace)
    until = time.time() + seconds(duration) if duration else None
    silence_id = runner.silence(rule, labels=labels, until=until, group=group, reason=reason)
    typer.echo(f"{silence_id} rule={rule} labels={labels} " + (f"until={until:.0f}" if until else "until resolved"))


@rules_app.command("backtest")
def rules_backtest(
    rule_name: Annotated[str, typer.Argument(help="the rule's name")],
    since: Annotated[str, typer.Option("--from", help="ISO time or epoch seconds")],
    until: Annotated[str, typer.Option("--to", help="ISO time or epoch seconds")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="rules folder (default: the config's)")] = None,
) -> None:
    """Replay a rule over stored history: when it would have fired and resolved."""
    from datetime import UTC, datetime

    from regwatch.esclient import client_from_config
    from rules.backtest import backtest
    from rules.model import RuleError, load_rules

    def epoch(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    settings = _load(config)
    try:
        rules = {r.name: r for r in load_rules(folder or settings.rules.folder)}
    except RuleError as exc:
        _fail(str(exc))
    if rule_name not in rules:
        _fail(f"no rule {rule_name!r}; rules: {', '.join(sorted(rules))}")
    transitions = backtest(client_from_config(settings), rules[rule_name], settings.namespace, epoch(since), epoch(until))
    for t in transitions:
        stamp = datetime.fromtimestamp(t.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        typer.echo(f"{stamp} {t.state:8} group={t.group} value={round(t.value, 4)}")
    typer.echo(f"{len(transitions)} transitions; fired {sum(t.state in ('firing', 'fired', 'changed') for t in transitions)} times")


@rules_app.command("status")
def rules_status(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    check: Annotated[bool, typer.Option("--check", help="exit 1 when no runner completed a cycle lately")] = False,
    stale_after: Annotated[Optional[float], typer.Option(
        help="seconds after which a runner counts as dead (default: the config's rules.stale_after_s)")] = None,
) -> None:
    """Runners (last cycle, lag) and firing alerts; --check for an outside monitor."""
    from regwatch.esclient import client_from_config
    from rules.state import StateStore

    settings = _load(config)
    if stale_after is None:
        stale_after = settings.rules.stale_after_s
    elif stale_after <= 0:
        _fail(f"--stale-after: {stale_after} is not a positive number of seconds", code=2)
    store = StateStore(client_from_config(settings), settings.namespace)
    with _elasticsearch_errors(settings):
        store.ensure()
    now = time.time()
    runners = store.runners()
    alive = [r for r in runners if now - r["last_cycle"] <= stale_after]
    for runner in sorted(runners, key=lambda r: r["runner"]):
        age = now - runner["last_cycle"]
        typer.echo(f"runner {runner['runner']} last_cycle={age:.0f}s ago lag={runner.get('lag', 0):.1f}s "
                   f"{'alive' if age <= stale_after else 'STALE'}")
    firing = store.client.search(index=store.index, size=1000, query={"bool": {"filter": [
        {"term": {"type": "alert"}}, {"term": {"state": "firing"}}]}})["hits"]["hits"]
    for hit in firing:
        typer.echo(f"firing {hit['_source']['rule']} group={hit['_source']['group']} value={hit['_source']['value']}")
    typer.echo(f"runners={len(runners)} alive={len(alive)} firing={len(firing)}")
    if check and not alive:
        raise typer.Exit(1)


@contextlib.contextmanager
def _elasticsearch_errors(settings):
    """Elasticsearch unreachable or refusing: one line naming the node (its password masked)."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    try:
        yield
    except (TransportError, ApiError) as exc:
        hosts = ", ".join(redact_url(h) for h in settings.elasticsearch.hosts)
        detail = getattr(exc, "message", None) or type(exc).__name__
        _fail(f"Elasticsearch at {hosts}: {type(exc).__name__}: {' '.join(str(detail).split())[:300]}")


def _load(path: Path | None):
    from regwatch.config import Config, ConfigError, load_config

    if path is None:
        return Config()
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc))


def main() -> None:
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, no traceback, non-zero
        structlog.get_logger("regwatch").debug("unexpected_error", exc_info=True)
        err.print(Text.assemble(("error: ", "red"), f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                                " (run with --log-level DEBUG for the traceback)"), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
