"""``regwatch rules``: validate, run, silence, backtest and watch the alert rules."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from regwatch.cli import silences
from regwatch.cli.common import daemon_logging, elasticsearch_errors, err, es_warnings, fail, load, serve_metrics
from regwatch.cli.silences import number as _number
from regwatch.cli.terminal import printable

RULES_POLL_S = 5.0  # how often `rules run` looks whether a rule file changed

app = typer.Typer(no_args_is_help=True, help="Alert rules over the event data streams.")

@app.command("validate")
def rules_validate(
    folder: Annotated[Path | None, typer.Argument(help="a folder of rule YAML files (default: the config's)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config: its notifiers "
                                                   "are the names a rule may notify")] = None,
) -> None:
    """Check every rule file; errors name the file, the rule and the key. With a config, every
    notifier a rule names must be configured."""
    from rules.model import RuleError, check_notifiers, load_rules

    settings = load(config) if config is not None or folder is None else None
    folders: Path | list[Path]
    if folder is not None:
        folders = folder
    else:
        assert settings is not None  # loaded above when no folder is given
        folders = settings.rules.folder_paths
    try:
        rules = load_rules(folders)
        if settings is not None:
            check_notifiers(rules, set(settings.rules.notifiers))
    except RuleError as exc:
        for line in str(exc).splitlines():  # a YAML key may hold control codes: shown, never sent
            err.print(Text.assemble(("error: ", "red"), printable(line)), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(rules)} rules valid: " + ", ".join(r.name for r in rules))


def _refuse_unreadable(client, rules, settings) -> None:
    """At the runner's start: a rule over an index its credentials cannot read is refused, in one
    line naming the rule and the index (searches would skip that index in silence)."""
    from rules.query import check_privileges

    if problems := check_privileges(client, rules, settings.namespace):
        fail(printable("; ".join(problems)))


def _unreadable_warnings(client, rules, settings) -> None:
    """``rules test`` and ``rules status``: the rules these credentials cannot read, as warnings."""
    from rules.query import check_privileges

    for problem in check_privileges(client, rules, settings.namespace):
        err.print(Text.assemble(("warning: ", "yellow"), printable(problem)), highlight=False, soft_wrap=True)


def _runner_id(configured: str | None) -> str:
    """The configured id, else host and process: two runners on one host are two runners."""
    import os
    import socket

    return configured or f"{socket.gethostname()}:{os.getpid()}"


class _Reloader:
    """The runner's rules read again on SIGHUP or when a rule file changes (checked every wake-up,
    as the shipper watches its config): a rule that still exists keeps its alerts. A file that
    does not load is logged in one line and the rules in force stay."""

    def __init__(self, runner, settings, client, index: str, log) -> None:
        from rules.model import fingerprint

        self.runner, self.settings, self.client, self.index, self.log = runner, settings, client, index, log
        self.folders = settings.rules.folder_paths
        self.seen = fingerprint(self.folders)
        self.requested = threading.Event()  # SIGHUP

    def due(self) -> bool:
        from rules.model import fingerprint

        return self.requested.is_set() or fingerprint(self.folders) != self.seen

    def reload(self) -> None:
        from rules.model import RuleError, check_notifiers, fingerprint, load_rules
        from rules.query import check_privileges, check_queries

        self.requested.clear()
        before, self.seen = self.seen, fingerprint(self.folders)
        try:
            rules = load_rules(self.folders)
            check_notifiers(rules, set(self.settings.rules.notifiers))
        except RuleError as exc:
            self.log.error("rules_not_reloaded", error="; ".join(str(exc).splitlines()),
                           kept=len(self.runner.rules))
            return
        try:
            problems = check_privileges(self.client, rules, self.settings.namespace)
            problems += check_queries(self.client, rules, self.index, self.settings.namespace)
        except Exception as exc:  # Elasticsearch away: asked again at the next wake-up
            self.seen = before
            self.log.warning("rules_reload_deferred", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        if problems:
            self.log.error("rules_not_reloaded", error="; ".join(problems), kept=len(self.runner.rules))
            return
        old = {rule.name for rule in self.runner.rules}
        new = {rule.name for rule in rules}
        self.runner.replace_rules(rules)
        self.log.info("rules_reloaded", rules=len(rules), added=sorted(new - old), removed=sorted(old - new))


@app.command("run")
def rules_run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    once: Annotated[bool, typer.Option("--once", help="one cycle, then exit")] = False,
) -> None:
    """The rule runner: evaluate due rules, notify, write alert history. It reads its rule files
    again on SIGHUP and when one changes; a file that does not load leaves the rules as they were."""
    import signal

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
        rules = load_rules(settings.rules.folder_paths)
        check_notifiers(rules, set(settings.rules.notifiers))
    except RuleError as exc:
        fail(str(exc))
    for name, target in settings.rules.notifiers.items():
        try:
            target.check()
        except DeliveryFailed as exc:
            fail(f"{config}: rules.notifiers.{name}: {exc}")
        for warning in target.warnings():
            from regwatch.cli.common import warn

            warn(f"rules.notifiers.{name}: {warning}")
    client = client_from_config(settings)
    with elasticsearch_errors(settings):
        store = StateStore(client, settings.namespace)
        store.ensure()
        _refuse_unreadable(client, rules, settings)
        problems = check_queries(client, rules, store.index, settings.namespace)
    if problems:
        fail("; ".join(problems))
    stop = threading.Event()  # SIGTERM: a send in flight is given up, the runner records what it knows and exits
    wake = threading.Event()  # SIGTERM or SIGHUP: the sleep ends now
    runner = Runner(client, rules, settings.namespace, dict(settings.rules.notifiers),
                    _runner_id(settings.rules.runner_id), stale_after=settings.rules.stale_after_s,
                    stale_notify=list(settings.rules.stale_notify), kibana_url=settings.rules.kibana_url,
                    lease_s=settings.rules.lease_s, stop=stop, retry_max_s=settings.rules.retry_max_s,
                    failing_after=settings.rules.notifier_failing_after_s,
                    failing_notify=settings.rules.notifier_failing_notify)
    import structlog

    log = structlog.get_logger("regwatch.rules")
    with elasticsearch_errors(settings):
        retired = runner.retire_dead_runners()
    if retired:
        log.info("runners_retired", runners=retired, why="their process on this host is gone")
    if not once:
        serve_metrics(runner.metrics, config, "rules.metrics_port", settings.rules.metrics_port,
                      settings.rules.metrics_address)
    reloader = _Reloader(runner, settings, client, store.index, log)

    def on_stop(*_) -> None:
        stop.set()
        wake.set()

    def on_hangup(*_) -> None:
        reloader.requested.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hangup)
    log.info("runner_started", runner=runner.runner_id, rules=len(rules))
    failed = False
    while True:
        if reloader.due():
            reloader.reload()
        try:
            report = runner.cycle()
        except Exception as exc:  # Elasticsearch away: the next cycle catches up
            log.warning("cycle_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if once:
                raise typer.Exit(1) from None
            failed = True
        else:
            failed = False
            if not report.idle:
                typer.echo(f"evaluated={len(report.evaluated)} transitions={len(report.transitions)} "
                           f"sent={len(report.sent)} failed={len(report.failed)} silenced={len(report.silenced)} "
                           f"dropped={len(report.dropped)} rule_failures={len(report.rule_failures)}")
        if once:
            break
        # Sleep until something is due (a failed cycle is retried in 5 s), a signal, or the next
        # look at the rule files; wake at least every few seconds so a changed clock cannot put
        # the runner to sleep for good.
        pause = 5.0 if failed else min(max(runner.wake_at() - time.time(), 0.05), RULES_POLL_S)
        wake.wait(pause)
        wake.clear()
        if stop.is_set():
            break
    try:
        runner.stopped()
    except Exception as exc:  # Elasticsearch away at the stop: the others see it stale
        log.warning("stop_not_recorded", error=f"{type(exc).__name__}: {str(exc)[:200]}")


def _epoch(text: str, option: str) -> float:
    """ISO 8601 or epoch seconds; a one-line error naming the option otherwise."""
    from datetime import UTC, datetime

    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            fail(f"{option} {text!r}: not an ISO time or epoch seconds", code=2)
        value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not 0 <= value < 253402300800:  # 1970 to the end of year 9999, as Elasticsearch's dates
        fail(f"{option} {text!r}: not a time between 1970 and 9999", code=2)
    return value


def _one_rule(settings, folder: Path | None, name: str):
    from rules.model import RuleError, load_rules

    try:
        rules = {r.name: r for r in load_rules(folder or settings.rules.folder_paths)}
    except RuleError as exc:
        fail(printable(str(exc)))
    if name not in rules:
        fail(f"no rule {name!r}; rules: {', '.join(sorted(rules))}")
    return rules[name]


@app.command("test")
def rules_test(
    rule_name: Annotated[str, typer.Argument(help="the rule's name")],
    at: Annotated[str | None, typer.Option("--at", help="the window's end: ISO time or epoch seconds "
                                              "(default: now)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    folder: Annotated[Path | None, typer.Option(help="rules folder (default: the config's)")] = None,
) -> None:
    """Dry run: the rule's query, each group's value, the bound and the transition it would make
    now. Reads only: nothing is written, nobody is notified."""
    import json

    from contract.timestamps import iso_from_epoch
    from regwatch.esclient import client_from_config
    from rules.backtest import dry_run

    moment = _epoch(at, "--at") if at is not None else time.time()  # the command line first (exit 2)
    settings = load(config)
    rule = _one_rule(settings, folder, rule_name)
    client = client_from_config(settings)
    with elasticsearch_errors(settings):
        _unreadable_warnings(client, [rule], settings)
        trial = dry_run(client, rule, settings.namespace, moment)
    def echo(text: str) -> None:  # groups and stored states are data: their control codes are shown escaped
        typer.echo(printable(text))

    echo(f"rule {rule.name} ({rule.type}) window {iso_from_epoch(trial.window_start)} .. "
         f"{iso_from_epoch(trial.window_end)} on {rule.time_field}")
    echo(f"index {trial.index}")
    echo("query " + json.dumps(trial.query, ensure_ascii=False))
    echo(f"threshold {trial.threshold}")
    for row in trial.rows:
        arrow = f"{row.state} -> {row.next_state}"
        echo(f"group={row.group} value={round(row.value, 4)}{_explained(row.detail)} {arrow}"
             + (f" (would notify {row.notify} to {', '.join(rule.notify) or 'nobody'})" if row.notify else ""))
    echo(f"{len(trial.rows)} groups; would notify {sum(1 for r in trial.rows if r.notify)}; nothing sent")


def _explained(detail: dict[str, Any] | None) -> str:
    """What the rule says of a value it explains (the anomaly rule), after the value:
    `` observed=... expected=... band=[lower, upper] score=...``; nothing for other rules."""
    if not detail:
        return ""

    def number(key: str) -> object:
        value = detail.get(key)
        return round(value, 4) if isinstance(value, int | float) else value

    return (f" observed={number('observed')} expected={number('expected')} "
            f"band=[{number('lower')}, {number('upper')}] score={number('score')}")


@app.command("backtest")
def rules_backtest(
    rule_name: Annotated[str, typer.Argument(help="the rule's name")],
    since: Annotated[str, typer.Option("--from", help="ISO time or epoch seconds")],
    until: Annotated[str, typer.Option("--to", help="ISO time or epoch seconds")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    folder: Annotated[Path | None, typer.Option(help="rules folder (default: the config's)")] = None,
) -> None:
    """Replay a rule over stored history: when it would have fired and resolved."""
    from contract.timestamps import iso_from_epoch
    from regwatch.esclient import client_from_config
    from rules.backtest import MAX_WINDOWS, backtest, window_count
    from rules.model import duration_text

    start, end = _epoch(since, "--from"), _epoch(until, "--to")  # the command line first (exit 2)
    if start >= end:
        fail(f"--from {since!r} is not before --to {until!r}", code=2)
    settings = load(config)
    rule = _one_rule(settings, folder, rule_name)
    if (count := window_count(rule, start, end)) > MAX_WINDOWS:
        fail(f"--from {since!r} --to {until!r}: {count} windows at the interval of rule {rule.name} "
             f"({duration_text(rule.interval)}); a backtest replays at most {MAX_WINDOWS}: shorten the range",
             code=2)
    with elasticsearch_errors(settings):
        transitions = backtest(client_from_config(settings), rule, settings.namespace, start, end)
    for t in transitions:
        stamp = iso_from_epoch(t.at, millis=False)
        typer.echo(printable(f"{stamp} {t.state:8} group={t.group} value={round(t.value, 4)}"))
    fired = sum(t.state in ('firing', 'fired', 'changed') for t in transitions)
    typer.echo(f"{len(transitions)} transitions; fired {fired} times")


def _rules_or_none(settings) -> list:
    """The configured rules, or none when they do not load (rules validate says why)."""
    from rules.model import RuleError, load_rules

    try:
        return load_rules(settings.rules.folder_paths)
    except RuleError:
        return []


def _unstamped(client, settings) -> dict[str, int]:
    """Documents without ``event.ingested`` in what the rules read by it, per index pattern."""
    from contract.streams import PRODUCT
    from rules.model import RuleError, load_rules

    patterns = {f"logs-{PRODUCT}.*-{settings.namespace}"}
    try:
        patterns |= {r.index for r in load_rules(settings.rules.folder_paths)
                     if r.index and r.time_field == "event.ingested"}
    except RuleError:
        pass  # rules validate / rules run say what is wrong with them
    out = {}
    for pattern in sorted(patterns):
        count = client.count(index=pattern, ignore_unavailable=True, allow_no_indices=True,
                             query={"bool": {"must_not": [{"exists": {"field": "event.ingested"}}]}})["count"]
        if count:
            out[pattern] = count
    return out


@app.command("status")
def rules_status(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="exit 1 when no runner completed a cycle lately, or a notifier has been failing for "
                        "rules.notifier_failing_after_s")] = False,
    stale_after: Annotated[float | None, typer.Option(
        help="seconds after which a runner counts as dead (default: the config's rules.stale_after_s)")] = None,
) -> None:
    """Runners (last cycle, lag), firing alerts and notifiers that fail; --check for an outside monitor."""
    from regwatch.esclient import client_from_config
    from rules.overview import failing_notifiers
    from rules.state import StateStore

    settings = load(config)
    if stale_after is None:
        stale_after = settings.rules.stale_after_s
    elif not 0 < stale_after < float("inf"):  # nan and inf too: no runner would ever count as dead
        fail(f"--stale-after: {stale_after} is not a positive number of seconds", code=2)
    client = client_from_config(settings)
    store = StateStore(client, settings.namespace)
    with elasticsearch_errors(settings):
        store.ensure()
        unstamped = _unstamped(client, settings)
        _unreadable_warnings(client, _rules_or_none(settings), settings)
        now = time.time()
        runners = store.runners()
        firing = store.firing()
        notifiers = failing_notifiers(client, settings.namespace, settings.rules.notifier_failing_after_s, now)
    alive = [r for r in runners if now - _number(r.get("last_cycle")) <= stale_after and r.get("state") != "stopped"]
    for runner in sorted(runners, key=lambda r: r["runner"]):
        age = now - _number(runner.get("last_cycle"))
        condition = "stopped" if runner.get("state") == "stopped" else "alive" if age <= stale_after else "STALE"
        typer.echo(printable(f"runner {runner['runner']} last_cycle={age:.0f}s ago "
                             f"lag={_number(runner.get('lag', 0)):.1f}s "
                             f"{condition}"))
    for index, count in unstamped.items():
        err.print(f"warning: {count} document(s) in {printable(index)} have no event.ingested "
                  "(indexed by another shipper, or "
                  "by a node without the ingest pipeline): rules count them by @timestamp, so one that arrives "
                  "after its window has passed is missed", markup=False, soft_wrap=True)
    for alert in firing:
        typer.echo(printable(f"firing {alert['rule']} group={alert['group']} value={alert['value']}"))
    for notifier in notifiers:
        typer.echo(printable(notifier.line()))
    failing = [n for n in notifiers if n.failing]
    typer.echo(f"runners={len(runners)} alive={len(alive)} firing={len(firing)} failing_notifiers={len(failing)}")
    if check and (not alive or failing):
        raise typer.Exit(1)


app.command("silence")(silences.rules_silence)
app.command("silences")(silences.rules_silences)
app.command("unsilence")(silences.rules_unsilence)
