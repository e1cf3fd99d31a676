"""``regwatch probe``: the registry seen from outside, every interval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regwatch.cli.common import daemon_logging, err, es_warnings, fail, load, serve_metrics

app = typer.Typer()


@app.command()
def probe(
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="regwatch YAML config (its probe: section)")] = None,
    once: Annotated[bool, typer.Option(
        help="one round of checks, written, then exit (1 when a target is down)")] = False,
    log_json: Annotated[bool, typer.Option(
        "--log-json/--log-console", help="log JSON lines (for a log collector); --log-console for people")] = True,
) -> None:
    """Health checks, synthetic registry transactions and host resources into the availability stream."""
    import signal
    import threading

    from contract.secrets import SecretError
    from pipeline.probe.runner import Probe
    from regwatch.esclient import client_from_config

    settings = load(config)
    where = config or "the default config"
    if not settings.probe.targets and not settings.probe.resources.enabled:
        fail(f"{where}: probe.targets: no target to check and resources not enabled", code=2)
    for target in settings.probe.targets:
        try:
            target.headers()  # refused now, not as an empty or broken header at every check
        except SecretError as exc:
            fail(f"{where}: {exc}", code=2)
    es_warnings(settings)
    daemon_logging(log_json)
    runner = Probe(settings.probe, client_from_config(settings, bulk=True), settings.namespace, settings.host_name)
    if not once:
        serve_metrics(runner.metrics, config, "probe.metrics_port", settings.probe.metrics_port,
                      settings.probe.metrics_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    report = runner.run(stop, once=once)
    if once and stop.is_set():
        fail("stopped before every check had ended")
    if once:
        for result in report.results:
            state = "up" if result.up else f"DOWN ({result.reason})"
            err.print(f"{result.target} {result.step}: {state} in {result.duration_s * 1000:.0f} ms",
                      markup=False, highlight=False)
        if runner.writer.buffer:
            fail(f"{len(runner.writer.buffer)} probe documents could not be written to Elasticsearch")
        if any(not r.up for r in report.results):
            raise typer.Exit(1)
