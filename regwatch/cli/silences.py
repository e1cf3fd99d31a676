"""Silences of the rule runner: mute a rule's notifications, list what is muted, end a silence.

The commands of ``regwatch rules silence`` / ``silences`` / ``unsilence``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from regwatch.cli.common import elasticsearch_errors, fail, load
from regwatch.cli.terminal import printable


def number(value) -> float:
    """A number from a state document, whatever it holds (a forged or damaged one: nan)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")



def rules_silence(
    rule: Annotated[str, typer.Argument(help="rule name, or * for every rule")],
    label: Annotated[list[str] | None, typer.Option(help="key=value the alert's labels must have")] = None,
    duration: Annotated[str | None, typer.Option("--for", help="how long, e.g. 2h")] = None,
    until_resolved: Annotated[bool, typer.Option(help="until the alert of --group resolves")] = False,
    group: Annotated[str | None, typer.Option(help="the alert's group (with --until-resolved)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the record")] = "",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """Mute a rule's notifications for a while, or until an alert resolves."""
    from regwatch.esclient import client_from_config
    from rules.model import RuleError, load_rules
    from rules.runner import Runner

    if bool(duration) == until_resolved:
        fail("give exactly one of --for DURATION and --until-resolved", code=2)
    labels = dict(_label(item) for item in (label or []))
    length = _silence_length(duration) if duration else None
    settings = load(config)
    if rule != "*":  # a typo would silence nothing and say it had
        try:
            known = {r.name for r in load_rules(settings.rules.folder_paths)}
        except RuleError as exc:
            fail(f"cannot check the rule name {rule!r}: {' '.join(str(exc).split())}")
        if rule not in known:
            fail(f"no rule {rule!r} in {', '.join(settings.rules.folders)} "
                 f"(rules: {', '.join(sorted(known)) or 'none'}; "
                 "* silences every rule)", code=2)
    until = time.time() + length if length is not None else None
    with elasticsearch_errors(settings):
        runner = Runner(client_from_config(settings), [], settings.namespace)
        silence_id = runner.silence(rule, labels=labels, until=until, group=group, reason=reason)
    typer.echo(printable(f"{silence_id} rule={rule} labels={labels} "
                         + (f"until={until:.0f}" if until else "until resolved")))


def _silences(settings):
    from regwatch.esclient import client_from_config
    from rules.cycle import Known
    from rules.silences import Silences
    from rules.state import StateStore

    store = StateStore(client_from_config(settings), settings.namespace)
    store.ensure()
    return Silences(store, Known())


def rules_silences(
    expired: Annotated[bool, typer.Option("--expired", help="also the silences that ended")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """The silences in force, newest first: id, rule, labels, group, until when, and why."""
    import json

    from contract.timestamps import iso_from_epoch

    settings = load(config)
    now = time.time()
    with elasticsearch_errors(settings):
        found = _silences(settings).listing(now, expired=expired)
    for item in found:
        doc = item.doc
        until = doc.get("until")
        moment = number(until)
        ends = ("until resolved" if until is None else f"until={iso_from_epoch(moment, millis=False)}"
                if 0 <= moment < 253402300800 else f"until={until!r}")
        if until is not None and number(until) <= now:
            ends += f" ended({doc.get('ended_by', 'expired')})"
        typer.echo(printable(f"{item.id} rule={doc.get('rule')} "
                             f"labels={json.dumps(doc.get('labels') or {}, ensure_ascii=False, sort_keys=True)} "
                             f"group={doc.get('group') if doc.get('group') is not None else '*'} {ends} "
                             f"reason={json.dumps(doc.get('reason') or '', ensure_ascii=False)}"))
    typer.echo(f"{len(found)} silences" + ("" if expired else " in force"))


def rules_unsilence(
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="the silence's id, as `rules silence` and "
                                                                 "`rules silences` show it")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """End a silence now: the rule's notifications are sent again from the next cycle."""
    settings = load(config)
    with elasticsearch_errors(settings):
        ended = _silences(settings).expire(silence_id, time.time())
    if ended is None:
        fail(printable(f"no silence {silence_id!r} in force (rules silences lists them)"))
    typer.echo(printable(f"{ended.id} expired rule={ended.doc.get('rule')}"))


def _label(item: str) -> tuple[str, str]:
    """One ``--label key=value``; a one-line error naming it otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        fail(f"--label {item!r}: not key=value (e.g. --label severity=critical)", code=2)
    return key, value


def _silence_length(text: str) -> float:
    """``--for``: a positive duration (30s, 5m, 1h, 2d), else a one-line error naming it."""
    from rules.model import seconds

    try:
        length = seconds(text)
    except ValueError as exc:
        fail(f"--for: {exc}", code=2)
    if length <= 0:
        fail(f"--for {text!r}: not a positive duration", code=2)
    return length
