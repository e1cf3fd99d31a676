"""``regwatch check``: one probe target or one alert rule, once, as a monitoring plugin.

For Nagios, Icinga, Naemon and Zabbix (``UserParameter`` / ``system.run``): one line on stdout,
``REGWATCH OK|WARNING|CRITICAL|UNKNOWN - text | perfdata``, and the exit status that goes with it.
Anything wrong with the plugin itself (options, configuration, Elasticsearch unreachable, a bug)
is UNKNOWN (3), never a traceback and never a status that could be read as the registry's.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from regwatch.cli.terminal import printable
from regwatch.plugin import Range, Status, line, perfdata, status_of


class PluginError(Exception):
    """The plugin's own trouble: said as UNKNOWN."""


def _exit(status: Status, text: str, perf: list[str] | None = None) -> NoReturn:
    """The plugin line, its control codes (groups and reasons are data) shown as ``\\xNN``: a NUL
    would end it early for readers in C, an escape sequence would reach the operator's console."""
    sys.stdout.write(printable(line(status, text, perf)) + "\n")
    sys.stdout.flush()
    raise typer.Exit(int(status))


def _usage_errors() -> tuple[type[Exception], ...]:
    """Typer 0.2x raises its own vendored click's exceptions (TyperException), older ones click's."""
    kinds: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    with contextlib.suppress(ImportError):
        import click

        kinds.append(click.ClickException)
    return tuple(kinds)


_USAGE_ERRORS = _usage_errors()


class PluginGroup(TyperGroup):
    """Usage errors are UNKNOWN (3) with one line on stdout, not exit 2 with a box on stderr."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _USAGE_ERRORS as exc:
            _usage(exc)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERRORS as exc:
            _usage(exc)


def _usage(exc: Exception) -> NoReturn:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    _exit(Status.UNKNOWN, f"usage: {message}")


app = typer.Typer(cls=PluginGroup, no_args_is_help=True,
                  help="One probe target or alert rule, once, as a monitoring plugin (Nagios, Icinga, Zabbix).")


@contextlib.contextmanager
def _unknown_on_error() -> Iterator[None]:
    try:
        yield
    except typer.Exit:
        raise
    except PluginError as exc:
        _exit(Status.UNKNOWN, str(exc))
    except Exception as exc:  # a plugin's own failure is UNKNOWN, said in one line
        _exit(Status.UNKNOWN, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


@contextlib.contextmanager
def _elasticsearch(settings) -> Iterator[None]:
    """Elasticsearch unreachable or refusing: UNKNOWN naming the node (its password masked)."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from contract.secrets import redact_userinfo

    try:
        yield
    except (TransportError, ApiError) as exc:
        hosts = ", ".join(redact_userinfo(h, keep_user=True) for h in settings.elasticsearch.hosts)
        detail = getattr(exc, "message", None) or str(exc)
        raise PluginError(f"Elasticsearch at {hosts}: {type(exc).__name__}: {' '.join(str(detail).split())[:300]}") \
            from None


def _config(path: Path | None):
    from regwatch.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise PluginError(" ".join(str(exc).split())) from None


def _range(option: str, text: str | None) -> Range | None:
    if text is None:
        return None
    try:
        return Range.parse(text)
    except ValueError as exc:
        raise PluginError(f"{option}: {exc}") from None


ConfigOption = Annotated[Path | None, typer.Option("--config", help="regwatch YAML config")]
Warning_ = Annotated[str | None, typer.Option("--warning", "-w", help="warning range ([@]start:end)")]
Critical = Annotated[str | None, typer.Option("--critical", "-c", help="critical range ([@]start:end)")]


@app.command("target")
def check_target(
    name: Annotated[str, typer.Argument(help="the probe target's name (probe.targets[].name)")],
    config: ConfigOption = None,
    warning: Warning_ = None,
    critical: Critical = None,
) -> None:
    """Health check (and synthetic transaction) of one target; -w/-c on the slowest step, seconds."""
    from contract.secrets import SecretError
    from pipeline.probe.runner import check_target as run_checks
    from pipeline.probe.runner import http_client

    with _unknown_on_error():
        settings = _config(config)
        warn_range, crit_range = _range("-w", warning), _range("-c", critical)
        targets = {t.name: t for t in settings.probe.targets}
        if name not in targets:
            raise PluginError(f"no probe target {name!r} in {config or 'the default config'} "
                              f"(targets: {', '.join(sorted(targets)) or 'none'})")
        target = targets[name]
        try:
            target.headers()  # a header whose variable is unset or unusable: said, never sent
        except SecretError as exc:
            raise PluginError(str(exc)) from None
        with http_client(target) as client:
            results = run_checks(client, target)
        perf = [perfdata(r.step, round(r.duration_s, 6), "s", warn_range, crit_range, 0) for r in results]
        down = [r for r in results if not r.up]
        if down:
            first = down[0]
            detail = f"HTTP {first.status}" if first.status else (first.message or "")[:200]
            _exit(Status.CRITICAL, f"{name} {first.step} down: {first.reason} ({detail})", perf)
        slowest = max(results, key=lambda r: r.duration_s)
        status = status_of(slowest.duration_s, warn_range, crit_range)
        steps = "" if len(results) == 1 else f", {len(results)} steps"
        _exit(status, f"{name} up, HTTP {results[0].status}, slowest {slowest.step} {slowest.duration_s:.3f} s{steps}",
              perf)


@app.command("rule")
def check_rule(
    name: Annotated[str, typer.Argument(help="the alert rule's name")],
    config: ConfigOption = None,
    warning: Warning_ = None,
    critical: Critical = None,
    folder: Annotated[Path | None, typer.Option(help="rules folder (default: the config's)")] = None,
) -> None:
    """The rule's current window, measured once (no state, no ``for``). Without -w/-c the rule's
    own condition decides: CRITICAL for a critical rule, else WARNING."""
    from regwatch.esclient import client_from_config
    from rules.backtest import read_now
    from rules.model import RuleError, load_rules

    with _unknown_on_error():
        settings = _config(config)
        warn_range, crit_range = _range("-w", warning), _range("-c", critical)
        try:
            rules = {r.name: r for r in load_rules(folder or settings.rules.folder_paths)}
        except RuleError as exc:
            raise PluginError(" ".join(str(exc).split())[:400]) from None
        if name not in rules:
            raise PluginError(f"no rule {name!r} (rules: {', '.join(sorted(rules))})")
        rule = rules[name]
        with _elasticsearch(settings):
            readings = read_now(client_from_config(settings), rule, settings.namespace, time.time())
        if warn_range is None and crit_range is None:
            breached = [r for r in readings if r.breached]
            status = (Status.CRITICAL if rule.severity == "critical" else Status.WARNING) if breached else Status.OK
            worst = max(breached or readings, key=lambda r: r.value)
        else:
            worst = max(readings, key=lambda r: (status_of(r.value, warn_range, crit_range), r.value))
            status = status_of(worst.value, warn_range, crit_range)
            breached = [r for r in readings if status_of(r.value, warn_range, crit_range) != Status.OK]
        group = "" if worst.group == "*" else f" for {worst.group}"
        value = worst.value if math.isfinite(worst.value) else float("nan")
        text = f"{rule.name}: {round(value, 4)}{group}" + (f" ({len(breached)} of {len(readings)} groups)"
                                                          if rule.group_by else "")
        _exit(status, text, [perfdata("value", value, "", warn_range, crit_range),
                             perfdata("groups_breaching", float(len(breached)), "", minimum=0)])
