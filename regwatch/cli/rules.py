"""``regwatch rules``: validate, run, silence, backtest and watch the alert rules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from regwatch.cli.common import daemon_logging, elasticsearch_errors, err, es_warnings, fail, load, serve_metrics

app = typer.Typer(no_args_is_help=True, help="Alert rules over the event data streams.")

@app.command("validate")
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


@app.command("run")
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

    settings = load(config)
    daemon_logging()
    es_warnings(settings)
    try:
        rules = load_rules(settings.rules.folder)
        check_notifiers(rules, set(settings.rules.notifiers))
    except RuleError as exc:
        fail(str(exc))
    for name, target in settings.rules.notifiers.items():
        try:
            target.check()
        except DeliveryFailed as exc:
            fail(f"{config}: rules.notifiers.{name}: {exc}")
    client = client_from_config(settings)
    with elasticsearch_errors(settings):
        store = StateStore(client, settings.namespace)
        store.ensure()
        problems = check_queries(client, rules, store.index)
    if problems:
        fail("; ".join(problems))
    runner = Runner(client, rules, settings.namespace, dict(settings.rules.notifiers),
                    settings.rules.runner_id or socket.gethostname(), stale_after=settings.rules.stale_after_s,
                    stale_notify=list(settings.rules.stale_notify), kibana_url=settings.rules.kibana_url)
    if not once:
        serve_metrics(runner.metrics, config, "rules.metrics_port", settings.rules.metrics_port,
                      settings.rules.metrics_address)
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


@app.command("silence")
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
        fail("give exactly one of --for DURATION and --until-resolved")
    labels = dict(item.split("=", 1) for item in (label or []))
    settings = load(config)
    runner = Runner(client_from_config(settings), [], settings.namespace)
    until = time.time() + seconds(duration) if duration else None
    silence_id = runner.silence(rule, labels=labels, until=until, group=group, reason=reason)
    typer.echo(f"{silence_id} rule={rule} labels={labels} " + (f"until={until:.0f}" if until else "until resolved"))


@app.command("backtest")
def rules_backtest(
    rule_name: Annotated[str, typer.Argument(help="the rule's name")],
    since: Annotated[str, typer.Option("--from", help="ISO time or epoch seconds")],
    until: Annotated[str, typer.Option("--to", help="ISO time or epoch seconds")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    folder: Annotated[Optional[Path], typer.Option(help="rules folder (default: the config's)")] = None,
) -> None:
    """Replay a rule over stored history: when it would have fired and resolved."""
    from datetime import datetime

    from regwatch.esclient import client_from_config
    from parsers.timestamps import iso_from_epoch
    from rules.backtest import backtest
    from rules.model import RuleError, load_rules

    def epoch(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    settings = load(config)
    try:
        rules = {r.name: r for r in load_rules(folder or settings.rules.folder)}
    except RuleError as exc:
        fail(str(exc))
    if rule_name not in rules:
        fail(f"no rule {rule_name!r}; rules: {', '.join(sorted(rules))}")
    transitions = backtest(client_from_config(settings), rules[rule_name], settings.namespace, epoch(since), epoch(until))
    for t in transitions:
        stamp = iso_from_epoch(t.at, millis=False)
        typer.echo(f"{stamp} {t.state:8} group={t.group} value={round(t.value, 4)}")
    typer.echo(f"{len(transitions)} transitions; fired {sum(t.state in ('firing', 'fired', 'changed') for t in transitions)} times")


@app.command("status")
def rules_status(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    check: Annotated[bool, typer.Option("--check", help="exit 1 when no runner completed a cycle lately")] = False,
    stale_after: Annotated[Optional[float], typer.Option(
        help="seconds after which a runner counts as dead (default: the config's rules.stale_after_s)")] = None,
) -> None:
    """Runners (last cycle, lag) and firing alerts; --check for an outside monitor."""
    from regwatch.esclient import client_from_config
    from rules.state import StateStore

    settings = load(config)
    if stale_after is None:
        stale_after = settings.rules.stale_after_s
    elif stale_after <= 0:
        fail(f"--stale-after: {stale_after} is not a positive number of seconds", code=2)
    store = StateStore(client_from_config(settings), settings.namespace)
    with elasticsearch_errors(settings):
        store.ensure()
    now = time.time()
    runners = store.runners()
    alive = [r for r in runners if now - r["last_cycle"] <= stale_after]
    for runner in sorted(runners, key=lambda r: r["runner"]):
        age = now - runner["last_cycle"]
        typer.echo(f"runner {runner['runner']} last_cycle={age:.0f}s ago lag={runner.get('lag', 0):.1f}s "
                   f"{'alive' if age <= stale_after else 'STALE'}")
    firing = store.firing()
    for alert in firing:
        typer.echo(f"firing {alert['rule']} group={alert['group']} value={alert['value']}")
    typer.echo(f"runners={len(runners)} alive={len(alive)} firing={len(firing)}")
    if check and not alive:
        raise typer.Exit(1)
