"""A real MLflow tracking server for tests (gunicorn's access log on), the MLflow client's tracking
URI put back as it was afterwards. The fixture is named ``registry``; import it where it is used:
``from support.mlflow_registry import mlflow_registry  # noqa: F401``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from regwatch.demo.registry import mlflow_server


@contextlib.contextmanager
def running_registry(workdir: Path) -> Iterator[tuple[str, Path]]:
    """(the server's URL, its gunicorn access log) for the length of a block."""
    mlflow = pytest.importorskip("mlflow")
    before = mlflow.get_tracking_uri()
    try:
        with mlflow_server(workdir, gunicorn=True) as (url, access_log):
            yield url, access_log
    finally:
        mlflow.set_tracking_uri(before)


@pytest.fixture(name="registry")
def mlflow_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with running_registry(tmp_path / "mlflow") as found:
        yield found
