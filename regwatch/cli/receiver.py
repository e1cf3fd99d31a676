"""``regwatch audit-receiver``: MLflow webhooks written as an audit log, and their registration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regwatch.cli.common import daemon_logging, err, fail, http_url

app = typer.Typer(help="MLflow webhooks, verified and written as an audit log the shipper follows.")

@app.callback(invoke_without_command=True)
def audit_receiver(
    ctx: typer.Context,
    log_file: Annotated[Path, typer.Option("--log", help="the audit log to append to")] = Path(
        "/var/log/regwatch/mlflow-audit.log"),
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:8686",
    secret_env: Annotated[str, typer.Option(
        help="environment variable holding the webhook secret")] = "REGWATCH_WEBHOOK_SECRET",
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
    from pipeline.receiver import AuditLog, Receiver, bound_socket, make_server

    daemon_logging()
    secret = os.environ.get(secret_env, "")
    if not secret:
        fail(f"no webhook secret: set {secret_env}")
    host, port = _listen_address(listen)
    if tolerance <= 0:
        fail(f"--tolerance: {tolerance} is not a positive number of seconds", code=2)
    if max_body < 1:
        fail(f"--max-body: {max_body} is not a positive number of bytes", code=2)
    if max_connections < 1:
        fail(f"--max-connections: {max_connections} is not a positive number", code=2)
    try:
        audit_log = AuditLog(log_file)
    except OSError as exc:
        fail(f"--log {log_file}: {exc.strerror or exc}")
    receiver = Receiver(audit_log, secret, canonical_record, tolerance_s=tolerance, max_body_bytes=max_body)
    server = make_server(receiver, host, port, max_connections=max_connections)
    try:  # bind here, so a port in use is one line naming it rather than uvicorn's log and exit
        sockets = [bound_socket(host, port)]
    except OSError as exc:
        fail(f"--listen {listen}: cannot listen: {exc.strerror or exc}")
    signal.signal(signal.SIGHUP, lambda *_: audit_log.reopen())
    err.print(f"listening on http://{host}:{port}/mlflow/webhook, writing {log_file}", markup=False, highlight=False)
    try:
        server.run(sockets=sockets)  # uvicorn handles SIGTERM and SIGINT: finishes requests, then stops
    finally:
        audit_log.close()


def _listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``: one line naming the value when it is not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        fail(f"--listen: {listen!r} is not host:port (e.g. 127.0.0.1:8686)", code=2)
    return host.strip("[]"), int(port)


@app.command("register")
def audit_receiver_register(
    mlflow: Annotated[str, typer.Option("--mlflow", help="MLflow tracking server URL")],
    url: Annotated[str, typer.Option("--url", help="the receiver's URL as MLflow will call it")],
    name: Annotated[str, typer.Option(help="webhook name in MLflow")] = "regwatch-audit",
    secret_env: Annotated[str, typer.Option(
        help="environment variable holding the webhook secret")] = "REGWATCH_WEBHOOK_SECRET",
) -> None:
    """Create or update the MLflow webhook for every model-registry event, then test it. Run MLflow
    with a fixed MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: without it MLflow cannot read the webhook
    after a restart, and the audit trail stops."""
    import os

    from parsers.mlflow_webhook import REGISTRY_EVENTS
    from pipeline.registration import RegistrationError, register

    http_url("--mlflow", mlflow, "http://mlflow.example:5000")
    http_url("--url", url, "http://receiver.example:8686")
    secret = os.environ.get(secret_env, "")
    if not secret:
        fail(f"no webhook secret: set {secret_env}")
    # MLflow's client retries a refused connection 7 times with back-off (minutes); a command the
    # operator waits on says so sooner. Their own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import logging

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # each retry is not the operator's news
    try:
        done = register(mlflow, url, name, secret, REGISTRY_EVENTS)
    except RegistrationError as exc:
        fail(str(exc))
    err.print(f"{done.verb} webhook {done.webhook_id} -> {done.url} for {', '.join(REGISTRY_EVENTS)}")
    err.print(f"test delivery answered {done.test_status}")
