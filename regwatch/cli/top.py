"""``regwatch top``: the registry live in the terminal, from Elasticsearch (rules.overview)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from regwatch.cli.common import elasticsearch_errors, err, fail, load
from regwatch.cli.terminal import printable

app = typer.Typer()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def render(view, namespace: str) -> Group:
    """One frame: tables of the overview, no logic beyond formatting. Names from the data (models,
    groups, targets, reasons) go in as Text, never parsed as rich markup: a model called "[/]"
    from a log line is printed as it is; their control codes are shown as ``\\xNN``, never sent."""
    ratio = view.error_ratio
    head = Text.assemble(
        ("regwatch top", "bold"), f"  namespace {printable(namespace)}, last {view.minutes} min   ",
        ("error ratio ", ""),
        (f"{ratio:.1%}" if ratio is not None else "-", "red" if ratio and ratio > 0.05 else "green"),
        f"   p50 {_ms(view.p50_ms)}   p95 {_ms(view.p95_ms)}   ",
        "probe's requests counted   " if view.synthetic else "",
        "shipper: newest line indexed "
        f"{'-' if view.newest_ingested_s_ago is None else f'{view.newest_ingested_s_ago:.0f} s ago'}"
        f" ({'-' if view.newest_delay_s is None else f'{view.newest_delay_s:.1f} s after it was written'})")
    kinds = Table("kind",
                  *[f"-{view.minutes - 1 - i}m" if i < view.minutes - 1 else "now" for i in range(view.minutes)],
                  title="operations per minute", title_justify="left")
    for kind, counts in view.per_minute.items():
        kinds.add_row(Text(printable(kind)), *[str(c) for c in counts])
    availability = Table("target", "now", "up", "checks", title="availability", title_justify="left")
    for target, a in view.availability.items():
        availability.add_row(Text(printable(target)),
                             Text("up", "green") if a["up_now"] else Text(f"down ({printable(a['reason'])})", "red"),
                             f"{a['up_ratio']:.1%}", str(a["checks"]))
    models = Table("model", "calls", title="busiest models", title_justify="left")
    for name, count in view.models.items():
        models.add_row(Text(printable(name)), str(count))
    firing = Table("rule", "group", "state", "since", title="alerts", title_justify="left")
    for alert in view.firing:
        moment = alert.get("since")
        since = time.strftime("%H:%M:%S", time.localtime(moment)) if isinstance(moment, (int, float)) and \
            0 <= moment < 253402300800 else "-"  # a forged or damaged document shows no time
        firing.add_row(Text(printable(alert.get("rule", ""))), Text(printable(alert.get("group", ""))),
                       Text(printable(alert.get("state", "")), "red"), since)
    if not view.firing:
        firing.add_row("none firing", "", "", "")
    anomalies = Table("rule", "group", "score", "actual", "expected", "usual", "bucket",
                      title="anomaly scores, highest first", title_justify="left")
    for found in view.anomalies:
        score = Text("learning", "dim") if found["learning"] else \
            Text(f"{found['score']:.0f}", "red" if found["score"] >= 40 else "")
        anomalies.add_row(Text(printable(found["rule"])), Text(printable(found["group"])), score,
                          _number(found["actual"]), _number(found["expected"]),
                          f"{_number(found['lower'])} to {_number(found['upper'])}",
                          Text(printable(str(found["bucket"] or "-"))))
    if not view.anomalies:
        anomalies.add_row("no anomaly results", "", "", "", "", "", "")
    return Group(head, kinds, availability, models, firing, anomalies)


def _number(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


@app.command()
def top(
    namespace: Annotated[str, typer.Option(help="data stream namespace ('*' for all)")] = "*",
    minutes: Annotated[int, typer.Option(min=1, max=60, help="how far back")] = 5,
    refresh: Annotated[float, typer.Option(min=0.5, help="seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="one frame, then exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one frame as JSON, then exit")] = False,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="count the probe's own requests too (left out by default, as in the rules)")] = False,
    config: Annotated[typer.FileText | None, typer.Option("--config", "-c", help="regwatch YAML config")] = None,
) -> None:
    """The registry live: operations per kind per minute, error ratio, latency, availability,
    busiest models, firing alerts, the highest current anomaly scores (each anomaly rule and
    group's latest bucket: its value against the usual band), shipper lag (works against any
    regwatch cluster).

    The error ratio counts server errors, refused credentials and throttling (5xx, 401, 403, 429),
    as the registry-error-ratio rule does; the probe's own requests are left out unless
    --synthetic."""
    from pathlib import Path

    from regwatch.config import valid_namespace
    from regwatch.esclient import client_from_config
    from rules.overview import read

    try:  # '*' for all, or a namespace (a trailing '*' allowed): never a list of other indices
        if namespace != "*":
            valid_namespace(namespace.replace("*", "x"))
    except ValueError as exc:
        fail(f"--namespace {printable(repr(namespace))}: {exc}", code=2)
    settings = load(Path(config.name) if config is not None else None)
    client = client_from_config(settings)
    with elasticsearch_errors(settings):
        try:
            view = read(client, namespace, minutes, synthetic=synthetic)
        except RuntimeError as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps({**dataclasses.asdict(view), "error_ratio": view.error_ratio}, sort_keys=True))
            return
        if once:
            from rich.console import Console

            Console().print(render(view, namespace))
            return
        try:
            with Live(render(view, namespace), console=err, screen=False, auto_refresh=False) as live:
                while True:
                    time.sleep(refresh)
                    live.update(render(read(client, namespace, minutes, synthetic=synthetic), namespace),
                                refresh=True)
        except KeyboardInterrupt:
            pass
