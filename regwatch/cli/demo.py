"""``regwatch demo``: a real MLflow server, driven by the MLflow client, its log shipped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regwatch.cli.common import err, fail


app = typer.Typer()


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the MLflow server keeps its data and logs")] = Path(".regwatch/demo"),
    loads: Annotated[int, typer.Option(help="model loads per model in the workload")] = 3,
    namespace: Annotated[str, typer.Option(help="data stream namespace")] = "demo",
) -> None:
    """A real MLflow server driven by the real MLflow client; its access log shipped and summarised."""
    import shutil

    from regwatch.config import Config
    from regwatch.demo import indexed_summary, mlflow_server, run_workload
    from regwatch.esclient import client_from_config
    from regwatch.ship import build_shipper

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    err.print(f"starting an MLflow server (work folder {workdir})")
    try:
        with mlflow_server(workdir) as (url, access_log):
            err.print(f"MLflow at {url}: running the registry workload with MlflowClient")
            truth = run_workload(url, workdir / "truth.jsonl", loads=loads)
    except RuntimeError as exc:
        fail(str(exc))
    err.print(f"{len(truth)} client operations; shipping {access_log}")
    config = Config.model_validate({
        "namespace": namespace,
        "checkpoint_file": str(workdir / "checkpoints.json"),
        "metrics_port": None,
        "inputs": [{"paths": [str(access_log)], "format": "gunicorn", "service_environment": "demo"}],
    })
    summary = build_shipper(config).run(once=True)
    typer.echo(summary.line())
    pattern, kinds, top = indexed_summary(client_from_config(config), namespace)
    typer.echo(f"in Elasticsearch ({pattern}): " + " ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    typer.echo("retrievals by model: " + " ".join(f"{k}={v}" for k, v in top.items()))
