"""``regwatch kibana``: import and export the saved objects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regwatch.cli.common import fail, http_url
from regwatch.cli.terminal import printable

URL_HELP = ("Kibana base URL (credentials: KIBANA_API_KEY, or KIBANA_USERNAME and KIBANA_PASSWORD; "
            "a private CA: KIBANA_CA_CERT)")
SPACE_HELP = "Kibana space id (as in /s/<id>/; default: the default space)"

app = typer.Typer(no_args_is_help=True, help="regwatch's Kibana dashboards, data views and searches.")

@app.command("import")
def kibana_import(
    url: Annotated[str, typer.Option("--url", help=URL_HELP, envvar="KIBANA_URL")] = "http://127.0.0.1:5601",
    space: Annotated[str | None, typer.Option(
        help=SPACE_HELP + ". Notification links follow it when rules.kibana_url ends in /s/<id>")] = None,
    file: Annotated[Path | None, typer.Option(help="NDJSON to import (default: the shipped objects)")] = None,
) -> None:
    """Import (overwrite) the saved objects; report what was created, updated or failed.

    Needs, in the space: all on Saved Objects Management, Dashboard, Visualize Library, Discover, Data View Management.
    """
    import httpx

    from kibana.client import KibanaError, import_objects
    from kibana.objects import NDJSON

    http_url("--url", url, "http://127.0.0.1:5601")
    try:
        payload = (file or NDJSON).read_bytes()
    except OSError as exc:
        fail(f"--file {file}: {exc.strerror or exc}", code=2)
    try:
        report = import_objects(url, payload, space)
    except (httpx.HTTPError, KibanaError) as exc:
        fail(f"Kibana import failed: {exc}")
    for label, names in (("created", report.created), ("updated", report.updated), ("failed", report.failed)):
        for name in names:
            typer.echo(printable(f"{label:8} {name}"))  # names come from Kibana's answer
    typer.echo(f"created={len(report.created)} updated={len(report.updated)} failed={len(report.failed)}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def kibana_export(
    url: Annotated[str, typer.Option("--url", help=URL_HELP, envvar="KIBANA_URL")] = "http://127.0.0.1:5601",
    space: Annotated[str | None, typer.Option(help=SPACE_HELP)] = None,
    out: Annotated[Path, typer.Option(help="where to write the NDJSON")] = Path("regwatch-export.ndjson"),
) -> None:
    """Export regwatch's objects as edited in Kibana (every one, and what they reference), all fields kept."""
    import httpx

    from kibana.client import KibanaError, export_objects
    from kibana.objects import all_objects

    http_url("--url", url, "http://127.0.0.1:5601")
    try:
        text = export_objects(url, all_objects(), space)
    except (httpx.HTTPError, KibanaError) as exc:
        fail(f"Kibana export failed: {exc}")
    try:
        out.write_text(text)
    except OSError as exc:
        fail(f"--out {out}: {exc.strerror or exc}", code=2)
    typer.echo(f"wrote {out} ({len(text.splitlines())} objects)")
