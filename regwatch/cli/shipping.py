"""``regwatch setup``, ``parse``, ``ship``, ``status``: logs to documents to Elasticsearch."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console

from regwatch.cli.common import daemon_logging, elasticsearch_errors, err, es_warnings, fail, load, serve_metrics
from regwatch.cli.terminal import printable

app = typer.Typer()


@app.command()
def setup(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
    retention: Annotated[str, typer.Option(help="data stream retention, '' for none")] = "90d",
    namespace: Annotated[str | None, typer.Option(help="namespace whose data streams to create "
                                                          "(default: the config's)")] = None,
    api_keys: Annotated[Path | None, typer.Option("--api-keys", help="also create least-privilege API keys "
                                                     "for the shipper, probe, rule runner and viewer, written to "
                                                     "DIR/<service>.key (earlier ones invalidated)")] = None,
    replicas: Annotated[int | None, typer.Option(min=0, max=5, help="replicas per shard (default: 0 on one data "
                                                    "node, 1 on more)")] = None,
    shards: Annotated[int, typer.Option(min=1, max=64, help="primary shards per backing index (docs/capacity.md)")] = 1,
) -> None:
    """Install the index templates and create every data stream of the namespace, empty (idempotent).

    Replicas follow the cluster found (0 on one data node, 1 on more) and are applied to the
    existing backing indices too, so a cluster grown from one node gets its copies.
    """
    import re

    from contract.mappings import mappings
    from pipeline import access, datastreams, heartbeat, templates
    from regwatch.config import valid_namespace
    from regwatch.esclient import client_from_config

    if retention and not re.fullmatch(r"[1-9]\d{0,8}(d|h|m|s|ms)", retention):
        fail(f"--retention {retention!r}: not a retention such as 90d, 12h or 30m ('' for none)", code=2)
    settings = load(config)
    if namespace is not None:
        try:
            namespace = valid_namespace(namespace)
        except ValueError as exc:
            fail(f"--namespace {namespace!r}: {exc}", code=2)
    namespace = namespace or settings.namespace
    es_warnings(settings)
    client = client_from_config(settings)
    with elasticsearch_errors(settings):
        data_nodes = templates.data_nodes(client)
        chosen = replicas if replicas is not None else templates.replicas_for(data_nodes)
        if chosen >= data_nodes:
            err.print(f"warning: {chosen} replica(s) on {data_nodes} data node(s) cannot all be assigned: the cluster "
                      "stays yellow", markup=False, soft_wrap=True)
        installed = templates.install(client, retention=retention or None, replicas=chosen, shards=shards)
        created = datastreams.create_empty(client, namespace)
        templates.apply_replicas(client, chosen)
        rolled, mapped = templates.update_streams(client)
        _, degraded = templates.degrade(mappings(), templates.missing_types(client))
        heartbeat.ensure(client, namespace)
        stamped = templates.pipeline_in_place(client)
        keys = access.create_keys(client, api_keys, namespace=namespace) if api_keys is not None else {}
    why = "" if replicas is not None else f" ({'one data node' if data_nodes == 1 else f'{data_nodes} data nodes'})"
    err.print(f"{data_nodes} data node(s): {shards} primary shard(s) and {chosen} replica(s) per backing index{why}",
              markup=False, soft_wrap=True)
    err.print(f"installed {len(installed)} templates; created {len(created)} empty data streams in namespace "
              f"{namespace}")
    if degraded:
        kinds = sorted(set(degraded.values()))
        err.print(f"note: this node lacks the modules of some ECS field types: {len(degraded)} fields mapped to the "
                  f"nearest type ({', '.join(kinds)})",
                  markup=False, soft_wrap=True)
    if rolled:
        fields = sorted({name for changed in rolled.values() for name in changed})
        err.print(f"rolled over {len(rolled)} data stream(s) whose field types changed ({', '.join(fields)}): "
                  "new documents take the new types, earlier ones stay searchable beside them",
                  markup=False, soft_wrap=True)
    if not mapped:
        err.print("note: backing indices written before a field's type changed keep their earlier type; new fields "
                  "are searchable from each stream's current backing index", markup=False, soft_wrap=True)
    if stamped:
        err.print(f"ingest pipeline {templates.INGEST_PIPELINE}: in place (the node stamps event.ingested)",
                  markup=False)
    else:
        err.print(f"ingest pipeline {templates.INGEST_PIPELINE}: not in place (this node has no ingest processors): "
                  "regwatch's shipper stamps event.ingested itself; documents other shippers write without it are "
                  "counted by @timestamp (regwatch rules status counts them)", markup=False, soft_wrap=True)
    if api_keys is not None:  # else no keys were made
        for service, key_id in keys.items():
            err.print(f"API key {access.KEY_PREFIX}{service} (id {key_id}) written to "
                      f"{api_keys / (service + '.key')}")


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="log files to parse ('-' for stdin)")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help="nginx, nginx-json, gunicorn, uvicorn, databricks-audit, cloudtrail, audit")],
    routes: Annotated[Path | None, typer.Option(help="route table YAML replacing the built-in one")] = None,
    namespace: Annotated[str, typer.Option(help="data stream namespace")] = "default",
    validate: Annotated[bool, typer.Option(help="check each document against the event model")] = False,
    keep_original: Annotated[bool, typer.Option(help="keep the raw line in event.original")] = False,
) -> None:
    """Print, one JSON line each, the documents that would be indexed (no Elasticsearch)."""
    from parsers import FORMATS, LineParser, ParseContext
    from parsers.events import validate_document
    from parsers.routes import Router, RouteTableError, load_table

    if format not in FORMATS:
        fail(f"--format {format!r}: not a format regwatch reads; one of: {', '.join(FORMATS)}", code=2)
    try:
        router = Router(load_table(routes)) if routes else None
    except RouteTableError as exc:
        fail(str(exc), code=2)
    from pipeline.interpreter import tune_interpreter

    if namespace != "default":  # (the default is valid: its check would cost a quarter of start-up)
        from regwatch.config import valid_namespace

        try:  # the shipper's own check: a namespace it would refuse prints no documents either
            namespace = valid_namespace(namespace)
        except ValueError as exc:
            fail(f"--namespace {namespace!r}: {exc}", code=2)
    parser = LineParser(ParseContext(namespace=namespace, format=format, keep_original=keep_original), router)
    tune_interpreter()  # the shipper's hot-path settings: rare garbage collections
    counts: dict[str, int] = {}  # documents by dataset (a plain dict: a Counter's += costs twice as much)
    out = sys.stdout.buffer
    for path in files:
        try:
            stream = sys.stdin.buffer if str(path) == "-" else open(path, "rb")
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}", code=2)
        with stream:
            # Lines a few hundred at a time, their documents written in one call per batch: the
            # shipper's own reading and batching, and its bound on a line (/dev/zero is no line)
            for lines in line_blocks(stream):
                out.write(parser.encode_block(lines, counts, validate_document if validate else None))
    out.flush()
    total = sum(counts.values())
    summary = " ".join(f"{kind.removeprefix('modelregistry.')}={counts[kind]}" for kind in sorted(counts))
    err.print(f"lines={total} {summary}", highlight=False, markup=False)


PARSE_BLOCK_BYTES = 64 * 1024
PARSE_MAX_LINE_BYTES = 1024 * 1024  # the shipper's default max_line_bytes


def line_blocks(stream: BinaryIO, block_bytes: int = PARSE_BLOCK_BYTES,
                max_line_bytes: int = PARSE_MAX_LINE_BYTES) -> Iterator[list[bytes]]:
    """``stream`` cut into lines (on b"\\n" only, each kept with its newline; the last one may
    lack it), a block's worth at a time. Memory stays bounded whatever the input: a line longer
    than ``max_line_bytes`` is cut to its first ``max_line_bytes`` and the rest skipped to the
    next newline (``readlines`` would hold a file without newlines, or a device, whole)."""
    pending = b""
    skipping = False  # inside a line already cut: its bytes are dropped up to the next newline
    while chunk := stream.read(block_bytes):
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            skipping, chunk = False, chunk[newline + 1:]
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        lines = [part + b"\n" for part in data[:cut].split(b"\n")[:-1]] if cut else []
        pending = data[cut:]
        if len(pending) > max_line_bytes:
            lines.append(pending[:max_line_bytes])
            pending, skipping = b"", True
        if lines:
            yield lines
    if pending:
        yield [pending]


@app.command()
def ship(
    config: Annotated[Path, typer.Option("--config", "-c", help="regwatch YAML config")],
    once: Annotated[bool, typer.Option("--once", help="read every input to its end, index, checkpoint, exit")] = False,
    log_json: Annotated[bool, typer.Option(
        "--log-json/--log-console", help="log JSON lines (for a log collector); --log-console for people")] = True,
) -> None:
    """The log shipper daemon: follow the inputs and index every line exactly once."""
    from parsers.routes import RouteTableError
    from pipeline.checkpoint import CheckpointError
    from pipeline.shipper import ShipperFailed
    from regwatch.ship import build_shipper, install_signals

    settings = load(config)
    daemon_logging(log_json)
    es_warnings(settings)
    bar = _progress_bar(settings) if once and sys.stderr.isatty() else None
    try:
        shipper = build_shipper(settings, config, progress=bar[1] if bar is not None else None)
    except (RouteTableError, CheckpointError) as exc:
        fail(str(exc))
    install_signals(shipper)
    if not once:
        serve_metrics(shipper.metrics, config, "metrics_port", settings.metrics_port, settings.metrics_address)
    try:
        if bar is not None:
            with bar[0]:
                summary = shipper.run(once=True)
        else:
            summary = shipper.run(once=once)
    except CheckpointError as exc:
        fail(str(exc))
    except ShipperFailed as exc:
        fail(f"shipping stopped: {exc} (acknowledged lines are checkpointed; a restart resumes after them)")
    typer.echo(summary.line())


def _progress_bar(settings):
    """A bar over the bytes of every input (shown while it is entered) and its advance."""
    import glob
    import os

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = sum(os.path.getsize(p) for i in settings.inputs for pat in i.paths for p in glob.glob(pat)
                if os.path.isfile(p))
    progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=err)
    task = progress.add_task("shipping", total=total)
    return progress, lambda n: progress.advance(task, n)


@app.command()
def status(
    config: Annotated[Path, typer.Option("--config", "-c", help="regwatch YAML config")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file (per shipper with --all)")] = False,
    every: Annotated[bool, typer.Option("--all", help="every shipper of the namespace, from their heartbeat "
                                        "documents in Elasticsearch (exit 1 when one is stale)")] = False,
) -> None:
    """Each known file: its path, acknowledged offset, size, and how far behind it is; with an
    inventory configured, how many retrievals of the last day could not be named."""
    from pipeline.checkpoint import CheckpointError, CheckpointStore, lag
    from pipeline.scanner import path_text

    settings = load(config)
    if every:
        _status_all(settings, as_json)
        return
    try:
        rows = lag(CheckpointStore(settings.checkpoint_file))
    except CheckpointError as exc:
        fail(str(exc))
    if as_json:
        for row in rows:
            typer.echo(json.dumps({"path": path_text(row.path), "offset": row.offset, "size": row.size,
                                   "behind": row.behind}))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("file", "offset", "size", "behind")
    for row in rows:
        table.add_row(Text(printable(path_text(row.path))), str(row.offset), "-" if row.size is None else str(row.size),
                      "rotated away" if row.behind is None else str(row.behind))
    Console().print(table)
    _unnamed(settings)


def _unnamed(settings) -> None:
    """With an inventory configured: how many retrievals of the last day could not be named
    (modelregistry.attribution), a line after the table; Elasticsearch away costs only the line."""
    if not settings.inventory.registries:
        return
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from pipeline.attribution import attribution_counts, unnamed_line
    from regwatch.esclient import client_from_config

    try:
        counts = attribution_counts(client_from_config(settings), settings.namespace)
    except (ApiError, TransportError) as exc:
        err.print(f"retrievals named by the inventory: not known (Elasticsearch: {type(exc).__name__})",
                  markup=False)
        return
    typer.echo(unnamed_line(counts))


def _status_all(settings, as_json: bool) -> None:
    import time

    from rich.table import Column, Table
    from rich.text import Text

    from pipeline import heartbeat
    from regwatch.esclient import client_from_config

    with elasticsearch_errors(settings):
        docs = heartbeat.shippers(client_from_config(settings), settings.namespace)
    now = time.time()
    for doc in docs:
        doc["condition"] = heartbeat.condition(doc, now)
        doc["age_s"] = round(now - float(doc.get("updated") or 0.0), 1)
    if as_json:
        for doc in docs:
            typer.echo(json.dumps(doc))
    else:
        table = Table(Column("shipper", overflow="fold"), Column("host", overflow="fold"), "state", "last heard",
                      "files", "behind (bytes)", "events", "dead letters",
                      title=Text(f"{len(docs)} shipper(s) in namespace {settings.namespace}"))
        for doc in docs:
            style = {"running": "green", "stale": "bold red", "stopped": "dim"}[doc["condition"]]
            host = doc.get("host")
            # Every cell from a heartbeat document is data: its control codes are shown, never sent.
            table.add_row(Text(printable(doc.get("shipper_id"))),
                          Text(printable(host.get("name") if isinstance(host, dict) else host)),
                          Text(doc["condition"], style=style), f"{doc['age_s']:.0f}s ago",
                          *(Text(printable(doc.get(key, 0))) for key in ("files_count", "behind_bytes", "events",
                                                                          "dead_letters")))
        Console().print(table)
        if not docs:
            err.print(f"no shipper has reported in namespace {settings.namespace} (heartbeats: regwatch-shipper-state-"
                      f"{settings.namespace})", markup=False)
        _unnamed(settings)
    if any(doc["condition"] == "stale" for doc in docs):
        raise typer.Exit(1)
