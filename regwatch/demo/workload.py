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
at the gateway and who keep calling the registry as before (the demo's nginx answers 401: the error-ratio incident);
``rollout`` is the team's day starting (each serving replica loads its model's champion once, a
training script sets its experiment and registers a version); ``storm`` is
a runaway client loading one model in a tight loop (the anomaly rule's incident).
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


STORM_CLIENT = 99  # the runaway client's number in the truth file
STORM_MODEL = "churn-predictor"  # what it loads
SETTLE_S = 8.0  # a version is served (its alias moved to it) only this long after it was made
WORSE = 0.5  # the third story's candidate: worse than every quality() a version gets otherwise


def quality(version: str) -> float:
    """The ``accuracy`` of version ``n``'s run: every version better than the one before (a team's
    ordinary promotions pass the regression rule), approaching 0.99."""
    return round(0.80 + 0.19 * (1 - 1 / max(int(version), 1)), 6)


@dataclass
class _Model:
    name: str
    run_id: str
    experiment: str | None  # where each version's run is logged
    versions: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # version -> its model folder (MLmodel, model.txt)
    born: dict[str, float] = field(default_factory=dict)  # version -> when it was made (time.time())
    champion: str | None = None  # the version the alias pointed to last this process knows
    logged_model: str | None = None  # MLflow 3's logged model of the run: what register_model registers

    def servable(self, now: float) -> str | None:
        """The newest version with files of its own made at least SETTLE_S ago: what a team
        promotes (the inventory has seen it by then, so its downloads are named)."""
        ready = [v for v in self.versions if v in self.files and now - self.born.get(v, 0.0) >= SETTLE_S]
        return max(ready, key=int) if ready else None


def _succeeded(action: Callable[[], None]) -> Callable[[], bool]:
    """``action`` returning True when it did not raise (for calls that return nothing)."""

    def run() -> bool:
        action()
        return True

    return run


class Truth:
    """The truth file: one JSON object per line, appended under a lock (clients are threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._moving = threading.Lock()  # held while an alias is chosen and moved
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
        self._moving = threading.Lock()  # held while an alias is chosen and moved
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

    def _op(self, client: int, op: str, model: str | None, action: Callable[[], Any],
            version: str | None = None) -> Any:
        from mlflow.exceptions import MlflowException

        wire.doing(client, op)
        record: dict[str, Any] = {"type": "operation", "t": time.time(), "client": client, "op": op,
                                  "model": model, "ok": True, "error": None}
        if version is not None:
            record["version"] = version
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
        """Each model: an experiment run holding an artifact, the model, version 1 (a run of its
        own with the artifact and an ``accuracy``), alias champion."""
        # A new experiment name each run: looking one up first would be a failed call (404).
        experiment = self._op(0, "create_experiment", None,
                              lambda: self.client.create_experiment(f"regwatch-demo-{self.run_id}"))
        for name in names:
            run = self._op(0, "create_run", None, lambda: self.client.create_run(experiment))
            # Each action runs at once inside _op, in this iteration (B023 cannot see that).
            logged = self._op(0, "log_model", None, lambda: self._logged_model(experiment, run.info.run_id))  # noqa: B023
            model = _Model(name, run.info.run_id, experiment, logged_model=logged)
            self._op(0, "create_model", name, lambda: self.client.create_registered_model(name))  # noqa: B023
            self.models[name] = model
            version = self._new_version(0, model)
            if version is not None:
                self._set_champion(0, model, version)

    def _logged_model(self, experiment: str, run_id: str) -> str:
        """The logged model a flavour's ``log_model`` leaves (MLflow 3), without a flavour: created
        from the run and marked ready."""
        from mlflow.entities import LoggedModelStatus

        logged = self.client.create_logged_model(experiment, name="model", source_run_id=run_id)
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return str(logged.model_id)

    def _new_version(self, client: int, model: _Model, accuracy: float | None = None) -> str | None:
        """A version as a training job makes one: a run of its own holding the model's file, the
        version registered from it, the run's ``accuracy`` logged (``quality`` of the version's
        number unless given) and the run ended. Its downloads name this version alone."""
        c, experiment = self.client, model.experiment
        if experiment is None:
            return None
        run = self._op(client, "create_run", model.name, lambda: c.create_run(experiment))
        if run is None:
            return None
        local = self._scratch / f"upload-{client}"
        local.mkdir(exist_ok=True)
        (local / "MLmodel").write_text(f"artifact_path: model\nflavors: {{}}\nrun_id: {run.info.run_id}\n")
        (local / "model.txt").write_text(f"weights of {model.name}, run {run.info.run_id}\n")
        if not self._op(client, "log_artifacts", model.name,
                        _succeeded(lambda: c.log_artifacts(run.info.run_id, str(local), "model"))):
            return None
        source = f"{run.info.artifact_uri}/model"
        created = self._op(client, "create_version", model.name,
                           lambda: c.create_model_version(model.name, source, run.info.run_id))
        if created is not None:
            version = str(created.version)
            value = quality(version) if accuracy is None else accuracy
            self._op(client, "log_metric", model.name, lambda: c.log_metric(run.info.run_id, "accuracy", value),
                     version=version)
            with self._lock:
                model.versions.append(version)
                model.files[version] = source
                model.born[version] = time.time()
        self._op(client, "end_run", model.name, lambda: c.set_terminated(run.info.run_id))
        return None if created is None else str(created.version)

    def _set_champion(self, client: int, model: _Model, version: str) -> None:
        name = model.name
        if self._op(client, "set_alias", name,
                    _succeeded(lambda: self.client.set_registered_model_alias(name, "champion", version)),
                    version=version):
            with self._lock:
                model.champion = version

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
        """Models already in the registry (a traffic phase after a seed in another process): every
        version, its files, its age, where the champion points, and the experiment of its runs."""
        for registered in self.client.search_registered_models():
            if registered.name not in MODELS:
                continue
            found = self.client.search_model_versions(f"name='{registered.name}'")
            versions = sorted(found, key=lambda v: int(v.version))
            if not versions:
                continue
            latest = versions[-1]
            run = self.client.get_run(latest.run_id) if latest.run_id else None
            model = _Model(registered.name, latest.run_id or "", run.info.experiment_id if run else None,
                           champion=(registered.aliases or {}).get("champion"))
            for v in versions:
                model.versions.append(str(v.version))
                model.born[str(v.version)] = (v.creation_timestamp or 0) / 1000
                if v.source and not v.source.startswith("models:/"):
                    model.files[str(v.version)] = v.source
            self.models[registered.name] = model
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
            latest = max(model.versions, key=int) if model.versions else "1"
        roll = rng.random()
        c = self.client
        if roll < 0.06:
            self._new_version(client, model)
        elif roll < 0.12:
            # One move at a time: two clients each choosing the newest version, the later one seen
            # first, would move champion back to an older (worse) version.
            with self._moving:
                with self._lock:
                    target = model.servable(time.time()) or model.champion
                if target is not None:
                    self._set_champion(client, model, target)
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
            self._serve(client, model)
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

    def _serve(self, client: int, model: _Model, version: str | None = None) -> None:
        """What a serving replica does: ``load_model("models:/<name>@champion")`` (the alias looked up,
        then that version's files downloaded), or, pinned to ``version`` (a replica that was not
        redeployed: the third story), that version's files."""
        if version is None:
            found = self._op(client, "get_by_alias", model.name,
                             lambda: self.client.get_model_version_by_alias(model.name, "champion"))
            if found is None or not found.source or found.source.startswith("models:/"):
                return
            version, file = str(found.version), found.source
        else:
            with self._lock:
                file = model.files.get(version, "")
            if not file:
                return
        self._op(client, "download_artifact", model.name, lambda: self._download(file, client), version=version)

    def promote_worse(self, name: str = MODELS[0]) -> tuple[str, str]:
        """The third story: a version worse than the champion (``accuracy`` WORSE) is registered and,
        once the inventory has seen it, ``champion`` moved to it. Returns (previous, new) version."""
        if not self.models:
            self._adopt()
        model = self.models[name]
        previous = model.champion
        new = self._new_version(0, model, accuracy=WORSE)
        if previous is None or new is None:
            raise RuntimeError(f"{name}: no champion to replace or no version registered")
        self.stop.wait(SETTLE_S)
        self._set_champion(0, model, new)
        self.truth.write({"type": "story", "t": time.time(), "story": "worse-promotion", "model": name,
                          "previous": previous, "version": new, "accuracy": WORSE})
        return previous, new

    def replicas(self, name: str, pinned_to: str, duration_s: float, clients: int, pace_s: float) -> int:
        """``clients`` replicas still pulling ``pinned_to`` (never redeployed) beside ``clients`` that
        load the champion as it is now; the number of downloads by pinned replicas."""
        if not self.models:
            self._adopt()
        model = self.models[name]
        deadline = time.monotonic() + duration_s

        def replica(client: int, pinned: bool) -> int:
            done = 0
            while time.monotonic() < deadline and not self.stop.is_set():
                self._serve(client, model, pinned_to if pinned else None)
                done += pinned
                self.stop.wait(pace_s)
            return done

        with ThreadPoolExecutor(2 * clients) as pool:
            jobs = [pool.submit(replica, 100 + i, i < clients) for i in range(2 * clients)]
            return sum(job.result() for job in jobs)

    def rollout(self) -> int:
        """The team's day starting: each serving replica loads its model's champion, and a training
        script sets its experiment and registers a version with MLflow's fluent API (the 404 and
        the 400 those calls meet as a matter of course). Returns the number of models loaded."""
        if not self.models:
            self._adopt()
        for client, model in enumerate(self.models.values(), start=1):
            self._serve(client, model)
        rng = random.Random(self.seed)
        self._set_experiment(len(self.models) + 1, rng)
        self._register_existing(len(self.models) + 1, self.models[MODELS[-1]])
        return len(self.models)

    def storm(self, name: str, duration_s: float) -> int:
        """A runaway client: one process loading ``name``'s champion (``load_model``: the alias
        looked up, the files downloaded) again and again, no pause, for ``duration_s``. Returns
        the number of loads."""
        if not self.models:
            self._adopt()
        model = self.models[name]
        wire.presenting(None)
        deadline = time.monotonic() + duration_s
        done = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            self._serve(STORM_CLIENT, model)
            done += 1
        return done

    def _download(self, file: str, client: int) -> str:
        import mlflow.artifacts

        target = self._scratch / f"client{client}"
        return mlflow.artifacts.download_artifacts(artifact_uri=file, tracking_uri=self.uri, dst_path=str(target))
