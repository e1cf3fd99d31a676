"""``regwatch inventory`` (the registry's models, versions and aliases, every interval) and
``regwatch history`` (what an alias pointed to, when)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from regwatch.cli.common import daemon_logging, elasticsearch_errors, err, es_warnings, fail, load, serve_metrics
from regwatch.cli.terminal import printable

app = typer.Typer()


@app.command()
def inventory(
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="regwatch YAML config (its inventory: section)")] = None,
    once: Annotated[bool, typer.Option(
        help="read each registry once, write what changed, then exit (1 when a registry could not be read)")] = False,
    log_json: Annotated[bool, typer.Option(
        "--log-json/--log-console", help="log JSON lines (for a log collector); --log-console for people")] = True,
) -> None:
    """Your registry's models, versions, aliases and their runs' metrics into Elasticsearch, and every
    change to them (a version registered, an alias moved), for `regwatch history` and the rules."""
    import signal
    import threading

    from contract.secrets import SecretError
    from pipeline.inventory.collector import Collector
    from regwatch.esclient import client_from_config

    settings = load(config)
    where = config or "the default config"
    if not settings.inventory.registries:
        fail(f"{where}: inventory.registries: no registry to read", code=2)
    for registry in settings.inventory.registries:
        try:
            registry.credentials()  # refused now, not at every poll
        except SecretError as exc:
            fail(f"{where}: {exc}", code=2)
    es_warnings(settings)
    daemon_logging(log_json)
    collector = Collector(settings.inventory, client_from_config(settings, bulk=True), settings.namespace)
    if not once:
        serve_metrics(collector.metrics, config, "inventory.metrics_port", settings.inventory.metrics_port,
                      settings.inventory.metrics_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reports = collector.run(stop, once=once)
    if once and stop.is_set():
        fail("stopped before every registry had been read")
    if once:
        for report in reports:
            if report.outcome == "ok":
                err.print(Text.assemble(printable(report.registry), f": {len(report.changes)} changes, "
                                        f"{report.written} documents written ({report.duplicates} already there), "
                                        f"{report.requests} requests"), highlight=False, soft_wrap=True)
            else:
                err.print(Text.assemble(printable(report.registry), ": ", (report.outcome.replace("_", " "), "red"),
                                        f" {printable(report.message)}"), highlight=False, soft_wrap=True)
        if any(r.outcome != "ok" for r in reports):
            raise typer.Exit(1)


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _answer(alias: str, found: Any) -> dict[str, Any]:
    return {"alias": alias, "version": found.version, "exact": found.exact, "known": found.known,
            "since": _iso(found.since) if found.since else None, "until": _iso(found.until) if found.until else None,
            "before": found.before, "window": [_iso(w) for w in found.window] if found.window else None}


def _say(model: str, at: float, answer: dict[str, Any]) -> Text:
    alias = printable(answer["alias"])
    head = f"{printable(model)}@{alias} at {_iso(at)}: "
    if not answer["known"]:
        return Text(head + f"unknown (the alias was first seen by {answer['until']}; nothing was recorded before)")
    if answer["exact"]:
        if answer["version"] is None:
            return Text(head + "not set" + (f" (set by {answer['until']})" if answer["until"] else ""))
        return Text(head + f"version {printable(answer['version'])} (seen from {answer['since']}"
                    + (f" until {answer['until']})" if answer["until"] else ", still in force)"))
    before = "not set" if answer["before"] is None else f"version {printable(answer['before'])}"
    after = "not set" if answer["version"] is None else f"version {printable(answer['version'])}"
    start, end = answer["window"]
    return Text(head + f"{before} or {after}: it changed between {start} and {end} (no registry records the moment)")


def _line(source: dict[str, Any]) -> Text:
    registry = source.get("modelregistry") or {}
    model, change = registry.get("model") or {}, registry.get("change") or {}
    action = (source.get("event") or {}).get("action", "")
    what, notes = "", []
    if model.get("alias"):
        what = f"{model['alias']} -> {change.get('current') or 'removed'}"
        if change.get("previous"):
            notes.append(f"was {change['previous']}")
    elif model.get("version"):
        what = f"version {model['version']}"
        if change.get("field"):
            what += f" {change['field']}: {change.get('previous', '')} -> {change.get('current', '')}"
    if change.get("observed_after"):  # seen at @timestamp, not before this
        notes.append(f"changed after {change['observed_after']}")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return Text(f"{source.get('@timestamp', '-')}  {printable(action):26} {printable(what + tail)}")


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="the registered model's name")],
    alias: Annotated[str | None, typer.Option(help="one alias of the model (champion); default: every alias")] = None,
    at: Annotated[str | None, typer.Option(
        metavar="TIME", help="what the aliases pointed to at this time (ISO 8601, UTC unless it says; or epoch "
                             "seconds); without it, every change of the model")] = None,
    registry: Annotated[str | None, typer.Option(help="the registry, when several hold this model's name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document, for scripts")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """What happened to a model: versions registered, stages, aliases moved; with --at, what each alias
    (or --alias) pointed to at that moment, from what `regwatch inventory` recorded."""
    from pipeline.inventory.history import alias_at, alias_events, aliases_of, fetch_changes, of_alias, registries_of
    from regwatch.cli.rules import _epoch  # ISO 8601 or epoch seconds, as rules test --at reads it
    from regwatch.esclient import client_from_config

    moment = _epoch(at, "--at") if at is not None else None
    settings = load(config)
    with elasticsearch_errors(settings):
        sources, more = fetch_changes(client_from_config(settings), settings.namespace, model, alias, registry)
    if not sources:
        what = f"alias {alias!r} of model {model!r}" if alias else f"model {model!r}"
        fail(f"no change of {what} recorded in namespace {settings.namespace!r} (is `regwatch inventory` running?)")
    found = registries_of(sources)
    if len(found) > 1:
        fail(f"model {model!r} is in registries {', '.join(found)}: name one with --registry")
    if more:
        err.print(f"warning: more than {len(sources)} changes; the oldest {len(sources)} are shown", highlight=False)
    if moment is None:
        if as_json:
            typer.echo(json.dumps({"model": model, "registry": found[0], "changes": sources}))
            return
        for source in sources:
            typer.echo(_line(source).plain)
        return
    answers = [_answer(name, alias_at(alias_events(of_alias(sources, name)), moment))
               for name in ([alias] if alias else aliases_of(sources))]
    if as_json:
        typer.echo(json.dumps({"model": model, "registry": found[0], "at": _iso(moment), "aliases": answers}))
        return
    if not answers:
        typer.echo(f"{printable(model)} at {_iso(moment)}: no alias recorded")
    for answer in answers:
        typer.echo(_say(model, moment, answer).plain)
