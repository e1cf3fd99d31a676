"""The workload generator: several concurrent clients using a registry as a team does, through
the real MLflow client, against any MLflow tracking server.

It records, as JSON lines in the truth file, every operation (``type: operation``: what, which
model, whether it worked) and every HTTP request the client sent for it (``type: request``, from
:mod:`regwatch.demo.wire`). The demo's summary and its test compare the requests with what
Elasticsearch holds, kind by kind.

Phases: ``seed`` gives every model a run with an artifact, a first version and the ``champion``
alias; ``traffic`` mixes registrations, versions, aliases, tags, stage changes, searches,
downloads and the odd lookup of a version that does not exist (a 404: control flow, not a
failure), and what MLflow's own fluent API asks as a matter of course: ``mlflow.register_model``
on a model that exists (its ``create registered model`` answers 400 RESOURCE_ALREADY_EXISTS before
the version is created) and ``mlflow.set_experiment`` of a new experiment (a 404 from
``get-experiment-by-name`` before it is created); ``burst`` is clients whose token was revoked
at the gateway and who keep calling the registry as before (the demo's nginx answers 401: the error-ratio incident).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from regwatch.demo import wire

log = structlog.get_logger(__name__)

MODELS = ("fraud-detector", "churn-predictor", "recsys-ranker", "demand-forecaster")
STAGES = ("Staging", "Production", "Archived")


@dataclass
class _Model:
    name: str
    run_id: str
    source: str  # the artifact folder a version points at
    artifact: str  # one file in it, for downloads
    versions: list[str] = field(default_factory=list)
    logged_model: str | None = None  # MLflow 3's logged model of the run: what register_model registers


class Truth:
    """The truth file: one JSON object per line, appended under a lock (clients are threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_truth(path: Path) -> list[dict[str, Any]]:
    from regwatch.demo.webhook_sink import read_json_lines

    return read_json_lines(path)


class Workload:
    """One registry, one truth file; ``run_id`` tags every request's User-Agent."""

    def __init__(self, tracking_uri: str, truth_path: Path, run_id: str, seed: int = 7) -> None:
        # The client's retries would hide requests from the record (they happen below requests' hooks).
        # The fluent API (mlflow.register_model, mlflow.set_experiment) reads the server from env.
        # What was there before comes back at close(): a workload run inside another program (a
        # test) leaves it the servers it had.
        settings = {"MLFLOW_TRACKING_AUTH": wire.NAME, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                    wire.TAG_ENV: wire.user_agent_tag(run_id), "MLFLOW_TRACKING_URI": tracking_uri,
                    "MLFLOW_REGISTRY_URI": tracking_uri}
        self._environ_before = {name: os.environ.get(name) for name in settings}
        os.environ.update(settings)
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        self.truth = Truth(truth_path)
        wire.listen(self.truth.write)
        self.seed = seed
        self.run_id = run_id
        self.stop = threading.Event()  # set: every client finishes the operation it is in, then stops
        self.models: dict[str, _Model] = {}
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="regwatch-workload-"))

    def close(self) -> None:
        wire.listen(lambda record: None)
        self.truth.close()
        for name, value in self._environ_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # -- recording ---------------------------------------------------------------------------

    def _op(self, client: int, op: str, model: str | None, action: Callable[[], Any]) -> Any:
        from mlflow.exceptions import MlflowException

        wire.doing(client, op)
        record: dict[str, Any] = {"type": "operation", "t": time.time(), "client": client, "op": op,
                                  "model": model, "ok": True, "error": None}
        try:
            return action()
        except MlflowException as exc:
            record.update(ok=False, error=exc.error_code)
            return None
        except OSError as exc:  # a download that could not be written, a connection torn down
            record.update(ok=False, error=type(exc).__name__)
            return None
        finally:
            self.truth.write(record)

    # -- phases ------------------------------------------------------------------------------

    def seed_models(self, names: tuple[str, ...] = MODELS) -> None:
        """Each model: an experiment run holding an artifact, the model, version 1, alias champion."""
        # A new experiment name each run: looking one up first would be a failed call (404).
        experiment = self._op(0, "create_experiment", None,
                              lambda: self.client.create_experiment(f"regwatch-demo-{self.run_id}"))
        for name in names:
            run = self._op(0, "create_run", None, lambda: self.client.create_run(experiment))
            local = self._scratch / "model.txt"
            local.write_text(f"weights of {name}\n")
            # Each action runs at once inside _op, in this iteration (B023 cannot see that).
            self._op(0, "log_artifact", None,
                     lambda: self.client.log_artifact(run.info.run_id, str(local), "model"))  # noqa: B023
            logged = self._op(0, "log_model", None, lambda: self._logged_model(experiment, run.info.run_id))  # noqa: B023
            model = _Model(name, run.info.run_id, f"{run.info.artifact_uri}/model",
                           f"{run.info.artifact_uri}/model/model.txt", logged_model=logged)
            self._op(0, "create_model", name, lambda: self.client.create_registered_model(name))  # noqa: B023
            self.models[name] = model
            self._new_version(0, model)
            self._op(0, "set_alias", name,
                     lambda: self.client.set_registered_model_alias(name, "champion", model.versions[-1]))  # noqa: B023

    def _logged_model(self, experiment: str, run_id: str) -> str:
        """The logged model a flavour's ``log_model`` leaves (MLflow 3), without a flavour: created
        from the run and marked ready."""
        from mlflow.entities import LoggedModelStatus

        logged = self.client.create_logged_model(experiment, name="model", source_run_id=run_id)
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return str(logged.model_id)

    def _new_version(self, client: int, model: _Model) -> None:
        version = self._op(client, "create_version", model.name,
                           lambda: self.client.create_model_version(model.name, model.source, model.run_id))
        if version is not None:
            with self._lock:
                model.versions.append(version.version)

    def traffic(self, duration_s: float, clients: int = 4, failing: bool = False, pace_s: float = 0.0) -> int:
        """``clients`` threads for ``duration_s``; each does one random operation after another
        (only failing calls when ``failing``). Returns the number of operations."""
        if not self.models:
            self._adopt()
        deadline = time.monotonic() + duration_s
        with ThreadPoolExecutor(clients) as pool:
            counts = list(pool.map(lambda c: self._client_loop(c, deadline, failing, pace_s), range(1, clients + 1)))
        return sum(counts)

    def _adopt(self) -> None:
        """Models already in the registry (a traffic phase after a seed in another process)."""
        for registered in self.client.search_registered_models():
            versions = sorted(registered.latest_versions or [], key=lambda v: int(v.version))
            if registered.name in MODELS and versions:
                latest = versions[-1]
                self.models[registered.name] = _Model(registered.name, latest.run_id, latest.source,
                                                      f"{latest.source}/model.txt",
                                                      [v.version for v in versions])
        if not self.models:
            raise RuntimeError(f"no demo models in {self.uri}: run the seed phase first")

    def _client_loop(self, client: int, deadline: float, failing: bool, pace_s: float) -> int:
        rng = random.Random(self.seed * 1000 + client)
        wire.presenting(wire.REVOKED_TOKEN if failing else None)
        done = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            if failing:
                self._failing_call(client, rng)
            else:
                self._one(client, rng)
            done += 1
            if pace_s:
                time.sleep(pace_s)
        return done

    def _failing_call(self, client: int, rng: random.Random) -> None:
        """What a deploy job does, with a token the gateway has revoked: each call is refused (401)."""
        name = rng.choice(list(self.models))
        c = self.client
        roll = rng.random()
        if roll < 0.4:
            self._op(client, "get_by_alias", name, lambda: c.get_model_version_by_alias(name, "champion"))
        elif roll < 0.7:
            self._op(client, "get_model", name, lambda: c.get_registered_model(name))
        else:
            self._op(client, "search_versions", name, lambda: c.search_model_versions(f"name='{name}'"))

    def _one(self, client: int, rng: random.Random) -> None:
        model = self.models[rng.choice(list(self.models))]
        name = model.name
        with self._lock:
            versions = list(model.versions)
        latest = versions[-1] if versions else "1"
        roll = rng.random()
        c = self.client
        if roll < 0.06:
            self._new_version(client, model)
        elif roll < 0.12:
            self._op(client, "set_alias", name, lambda: c.set_registered_model_alias(name, "champion", latest))
        elif roll < 0.17:
            self._op(client, "set_version_tag", name, lambda: c.set_model_version_tag(name, latest, "validated", "yes"))
        elif roll < 0.21:
            self._op(client, "transition_stage", name,
                     lambda: c.transition_model_version_stage(name, latest, rng.choice(STAGES)))
        elif roll < 0.24:
            self._op(client, "update_model", name,
                     lambda: c.update_registered_model(name, f"updated by client {client}"))
        elif roll < 0.45:
            self._op(client, "get_download_uri", name, lambda: c.get_model_version_download_uri(name, latest))
        elif roll < 0.60:
            self._op(client, "download_artifact", name, lambda: self._download(model, client))
        elif roll < 0.75:
            self._op(client, "get_by_alias", name, lambda: c.get_model_version_by_alias(name, "champion"))
        elif roll < 0.85:
            self._op(client, "search_versions", name, lambda: c.search_model_versions(f"name='{name}'"))
        elif roll < 0.89:
            self._op(client, "search_models", None, lambda: c.search_registered_models())
        elif roll < 0.92:
            self._register_existing(client, model)
        elif roll < 0.95:
            self._set_experiment(client, rng)
        elif roll < 0.995:
            self._op(client, "get_latest_versions", name, lambda: c.get_latest_versions(name))
        else:  # the odd mistake: a version that does not exist
            self._op(client, "get_missing_version", name, lambda: c.get_model_version(name, "9999"))

    def _register_existing(self, client: int, model: _Model) -> None:
        """A new version the way most training code registers one: ``mlflow.register_model`` on a
        name that exists (a 400 first, by design of the client)."""
        import mlflow

        if model.logged_model is None:  # adopted from the registry: its run logs a model first
            experiment = self._op(client, "get_run", model.name,
                                  lambda: self.client.get_run(model.run_id).info.experiment_id)
            logged = experiment and self._op(client, "log_model", None,
                                             lambda: self._logged_model(experiment, model.run_id))
            if not logged:
                return
            with self._lock:
                model.logged_model = logged
        uri = f"models:/{model.logged_model}"
        version = self._op(client, "register_model", model.name,
                           lambda: mlflow.register_model(uri, model.name, await_registration_for=0))
        if version is not None:
            with self._lock:
                model.versions.append(version.version)

    def _set_experiment(self, client: int, rng: random.Random) -> None:
        """What a training script does first, ``mlflow.set_experiment``, as its calls reach the
        server: the experiment by name (404 for a name not seen before), then created. Through the
        client, not the fluent API: that would make it the process's active experiment."""
        name = f"regwatch-demo-{self.run_id}-team-{rng.randrange(20)}"

        def set_experiment() -> str:
            found = self.client.get_experiment_by_name(name)
            return found.experiment_id if found is not None else self.client.create_experiment(name)

        self._op(client, "set_experiment", None, set_experiment)

    def _download(self, model: _Model, client: int) -> str:
        import mlflow.artifacts

        target = self._scratch / f"client{client}"
        return mlflow.artifacts.download_artifacts(artifact_uri=model.artifact, tracking_uri=self.uri,
                                                   dst_path=str(target))
