"""What every command shares: the console, one-line errors, logging, the configuration."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from contract.secrets import redact_userinfo
from regwatch.cli.terminal import printable
from regwatch.logging import configure as configure_logging

err = Console(stderr=True)
_LOG_LEVEL: dict[str, str | None] = {"level": None}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def set_log_level(level: str | None) -> None:
    """The root ``--log-level``: commands log at WARNING unless told, daemons at INFO."""
    if level is not None and level.upper() not in LOG_LEVELS:
        fail(f"--log-level: {level!r} is not one of {', '.join(LOG_LEVELS)}", code=2)
    _LOG_LEVEL["level"] = level.upper() if level else None
    configure_logging(_LOG_LEVEL["level"] or "WARNING")


def daemon_logging(json_lines: bool = True) -> None:
    """Daemons log at INFO unless ``--log-level`` said otherwise."""
    configure_logging(_LOG_LEVEL["level"] or "INFO", json=json_lines)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, the message taken as plain text (a YAML error may hold ``[...]``)."""
    err.print(Text.assemble(("error: ", "red"), printable(" ".join(message.split("\n")))), highlight=False,
              soft_wrap=True)
    raise typer.Exit(code)


def serve_metrics(metrics, config: Path | None, key: str, port: int | None, address: str) -> None:
    """A daemon's /metrics (``metrics.registry`` served with deadlines and a connection cap, see
    regwatch.metrics_server); a port that cannot be bound is one line naming the config key."""
    if not port:
        return
    from regwatch.metrics_server import serve

    try:
        serve(metrics.registry, port, address)
    except OSError as exc:
        fail(f"{config}: {key}: cannot listen on {address}:{port}: {exc.strerror or exc}")


def warn(message: str) -> None:
    err.print(Text.assemble(("warning: ", "yellow"), printable(message)), highlight=False, soft_wrap=True)


def es_warnings(settings) -> None:
    for warning in settings.elasticsearch.warnings():
        warn(warning)


@contextlib.contextmanager
def elasticsearch_errors(settings):
    """Elasticsearch unreachable or refusing: one line naming the node (its password masked)."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    try:
        yield
    except (TransportError, ApiError) as exc:
        hosts = ", ".join(redact_userinfo(h, keep_user=True) for h in settings.elasticsearch.hosts)
        detail = getattr(exc, "message", None) or type(exc).__name__
        body = getattr(exc, "body", None)
        if isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("reason"):
            detail = f"{detail}: {body['error']['reason']}"
        fail(f"Elasticsearch at {hosts}: {type(exc).__name__}: {' '.join(str(detail).split())[:300]}")


def load(path: Path | None):
    from regwatch.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


def http_url(option: str, url: str, example: str = "http://host:port") -> str:
    """An http(s) URL with a host and a valid port, else a one-line error naming the option (a
    malformed one reached the HTTP libraries, whose errors are not one line)."""
    from urllib.parse import urlsplit

    shown = redact_userinfo(url, keep_user=True)[:200]  # a URL given with user:password is told without it
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        fail(f"{option} {shown!r}: not a URL ({exc})", code=2)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or not c.isprintable()
                                                                          for c in url):
        fail(f"{option} {shown!r}: not an http or https URL (e.g. {example})", code=2)
    return url
