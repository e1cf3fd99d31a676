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


# -- which versions are in use (rules/usage.py): downloads, stale, unused ------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _since(text: str, option: str) -> float:
    """A time ago (``7d``, ``24h``, ``30m``) or a moment (ISO 8601, epoch seconds), as epoch seconds."""
    import re
    import time

    from regwatch.cli.rules import _epoch

    if found := re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip()):
        return time.time() - float(found.group(1)) * _UNITS[found.group(2)]
    return _epoch(text, option)


def _duration(text: str, option: str) -> float:
    import re

    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not found:
        fail(f"{option} {text!r}: not a duration (30s, 10m, 2h, 7d)", code=2)
    return float(found.group(1)) * _UNITS[found.group(2)]


def _search(settings: Any, index: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The answer, or None when the data stream does not exist yet."""
    from elasticsearch import NotFoundError

    from regwatch.esclient import client_from_config

    with elasticsearch_errors(settings):
        try:
            return dict(client_from_config(settings).search(index=index, **body))
        except NotFoundError:
            return None


def _alias_changes(settings: Any, model: str | None, alias: str | None) -> list[dict[str, Any]]:
    from rules.usage import MAX_CHANGES, alias_changes_search, change_index

    answer = _search(settings, change_index(settings.namespace), alias_changes_search(model, alias))
    hits = answer["hits"]["hits"] if answer else []
    if not hits:
        what = f" of model {model!r}" if model else ""
        fail(f"no alias change{what} recorded in namespace {settings.namespace!r} (is `regwatch inventory` "
             "running?)")
    if answer and answer["hits"]["total"]["value"] > MAX_CHANGES:
        err.print(f"warning: more than {MAX_CHANGES} alias changes; the oldest {MAX_CHANGES} are read", highlight=False)
    return [hit["_source"] for hit in hits]


def _table(*headers: str, numbers: tuple[str, ...] = ()) -> Any:
    from rich.table import Column, Table

    # fold, never cut: a long model name or time on a narrow terminal is shown whole, on several lines
    return Table(*(Column(h, justify="right" if h in numbers else "left", overflow="fold") for h in headers))


def _cells(*values: object) -> list[Text]:
    """Every value from data as text with its control codes shown, never sent."""
    return [Text(printable("-" if v is None else v)) for v in values]


def _when(iso: str | None) -> str | None:
    """A time in a table cell: to the second, UTC (the header says so); --json has the full time."""
    return iso[:19].replace("T", " ") if iso else iso


def _show(table: Any) -> None:
    from rich.console import Console

    Console().print(table)


@app.command()
def downloads(
    model: Annotated[str | None, typer.Argument(help="one registered model; default: every model")] = None,
    since: Annotated[str, typer.Option(
        metavar="TIME", help="from this long ago (7d, 24h, 30m) or this moment (ISO 8601, epoch seconds)")] = "7d",
    by: Annotated[str | None, typer.Option(
        metavar="host|user", help="one row per client host (its address) or per user, for each version and day")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document, for scripts")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """How often each model version was downloaded, day by day, and by how many hosts and users
    (--by host|user: by which). A download is a whole model pulled (its MLmodel file fetched); files
    counts every file of it fetched. Downloads that could not be tied to a version are counted below."""
    from rules.usage import BY_FIELDS, downloads_rows, downloads_search, iso, retrieval_index

    if by is not None and by not in BY_FIELDS:
        fail(f"--by {by!r}: one of {', '.join(BY_FIELDS)}", code=2)
    start = _since(since, "--since")
    settings = load(config)
    answer = _search(settings, retrieval_index(settings.namespace), downloads_search(start, model, by))
    rows, unnamed = downloads_rows(answer, by) if answer else ([], {})
    if as_json:
        typer.echo(json.dumps({"since": iso(start), "model": model, "by": by,
                               "rows": [{**r.as_json(), **({by: r.client} if by else {})} for r in rows],
                               "unnamed": unnamed}))
        return
    what = f"model {printable(model)}" if model else "any model"
    if not rows:
        typer.echo(f"no download of {what} since {iso(start)}")
    else:
        table = _table("day", "model", "version", *([by] if by else []), "downloads", "files",
                       *([] if by else ["hosts", "users"]), numbers=("downloads", "files", "hosts", "users"))
        for row in rows:
            counts = [row.downloads, row.files] + ([] if by else [row.hosts, row.users])
            table.add_row(*_cells(row.day, row.model, row.version, *([row.client] if by else []), *counts))
        _show(table)
    if unnamed:
        reasons = ", ".join(f"{printable(why)} {count}" for why, count in sorted(unnamed.items()))
        typer.echo(f"{sum(unnamed.values())} downloaded files since {iso(start)} name no version ({reasons})")


@app.command()
def stale(
    model: Annotated[str | None, typer.Argument(help="one registered model; default: every model")] = None,
    alias: Annotated[str | None, typer.Option(help="one alias (champion); default: every alias")] = None,
    grace: Annotated[str, typer.Option(
        metavar="DURATION", help="leave out downloads this soon after the move (10m: clients given time to "
                                 "reload)")] = "0s",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document, for scripts")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """Versions still being downloaded after their alias moved on to another version (or was removed):
    who still pulls them, how often and last when, and which other aliases still point to them.
    Counted from the moment `regwatch inventory` saw the alias move."""
    from rules.usage import holders, retrieval_index, stale_rows, stale_search, versions_left

    grace_s = _duration(grace, "--grace")
    settings = load(config)
    changes = _alias_changes(settings, model, None)  # every alias: which others still hold a version
    left = [span for span in versions_left(changes) if alias is None or span.alias == alias]
    answer = _search(settings, retrieval_index(settings.namespace), stale_search(left, grace_s)) if left else None
    rows = stale_rows(left, answer, holders(changes)) if answer else []
    if as_json:
        typer.echo(json.dumps({"model": model, "alias": alias, "grace_s": grace_s,
                               "stale": [r.as_json() for r in rows]}))
        return
    if not rows:
        typer.echo("no version is downloaded after its alias moved on")
        return
    table = _table("model", "alias", "version", "alias moved on (UTC)", "alias now", "downloads",
                   "last download (UTC)", "hosts", "users", "still held by", numbers=("downloads",))
    for row in rows:
        table.add_row(*_cells(row.model, row.alias, row.version, _when(row.moved_at), row.now_points_to or "removed",
                              row.downloads, _when(row.last), ", ".join(row.hosts), ", ".join(row.users),
                              ", ".join(row.held_by) or "-"))
    _show(table)


@app.command()
def unused(
    model: Annotated[str | None, typer.Argument(help="one registered model; default: every model")] = None,
    since: Annotated[str, typer.Option(
        metavar="TIME", help="nobody downloaded it from this long ago (7d, 24h) or this moment (ISO 8601)")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document, for scripts")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """Versions an alias points to that nobody downloaded since --since (or since the alias came to
    them, if later): an alias serving no one, or clients pinned to something else."""
    from rules.usage import holders, iso, retrieval_index, unused_rows, unused_search

    start = _since(since, "--since")
    settings = load(config)
    held = holders(_alias_changes(settings, model, None))
    answer = _search(settings, retrieval_index(settings.namespace), unused_search(held, start)) if held else None
    rows = unused_rows(held, answer or _EMPTY)
    if as_json:
        typer.echo(json.dumps({"model": model, "since": iso(start), "unused": [r.as_json() for r in rows]}))
        return
    if not rows:
        typer.echo(f"every version an alias points to was downloaded since {iso(start)}")
        return
    table = _table("model", "alias", "version", "alias since (UTC)", "last download (UTC)")
    for row in rows:
        table.add_row(*_cells(row.model, row.alias, row.version, _when(row.since), _when(row.last) or "never"))
    _show(table)


_EMPTY: dict[str, Any] = {"aggregations": {"recent": {"buckets": {}}, "ever": {"buckets": {}}}}
