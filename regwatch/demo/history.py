"""The registry's past: what its access log held before the demo began, written as nginx lines
with past timestamps for the real shipper to read (as a rotated log it finds on first start).

An anomaly rule learns from history; a demo registry born a minute ago has none. The generator
writes the traffic a team's registry has, with its rhythm: retrievals and writes through the
working day, a tenth of that at night and a third on weekends, a nightly training job that
registers a version of every model and moves its ``champion`` alias, and the CI pipeline doing
the same in working hours every 20 to 60 minutes (registrations come in batches). Requests come as the
workload's operations make them (the same calls, the same share of each: a retrieval storm is a
storm against this, not against a different mix), from a few hosts and users of the team, with
latencies as a small registry answers (a few to a few hundred milliseconds). No server error, no
refused token, nothing over a second: the past holds none of the demo's incidents.

The day is laid so that the demo runs in the team's working hours (``now`` is 10:30 of a
Thursday of the team's week, whatever the clock says): the demo's traffic is a working morning's,
and the history's level at this hour is the rate the demo's clients call at (``ops_per_s``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from regwatch.demo.workload import MODELS

DAY = 86_400.0
NOW_HOUR = 10.5  # the team's clock when the demo runs
NOW_WEEKDAY = 3  # Thursday (Monday is 0): the three days before it are working days too
NIGHTLY_HOUR = 2.0  # when the training job registers its versions
USER_AGENT = "mlflow-python-client/3.1.0 regwatch-history/1 run=history"
HOSTS = [f"10.20.{i // 4}.{10 + i}" for i in range(12)]  # the team's notebooks, jobs and serving hosts

# What the workload's operations send (regwatch.demo.workload.Workload._one), by its weights: the
# calls of each and their answers. {m}: a model, {v}: a version, {r}: a run id.
_GET, _POST, _PATCH = "GET", "POST", "PATCH"
OPERATIONS: list[tuple[float, list[tuple[str, str, int]]]] = [
    (6, [(_POST, "/api/2.0/mlflow/runs/create", 200),
         (_PUT := "PUT", "/api/2.0/mlflow-artifacts/artifacts/1/{r}/artifacts/model/MLmodel", 200),
         (_POST, "/api/2.0/mlflow/model-versions/create", 200), (_POST, "/api/2.0/mlflow/runs/update", 200)]),
    (6, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
         (_POST, "/api/2.0/mlflow/registered-models/alias", 200)]),
    (5, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
         (_POST, "/api/2.0/mlflow/model-versions/set-tag", 200)]),
    (4, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
         (_POST, "/api/2.0/mlflow/model-versions/transition-stage", 200)]),
    (3, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
         (_PATCH, "/api/2.0/mlflow/registered-models/update", 200)]),
    (21, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
          (_GET, "/api/2.0/mlflow/model-versions/get-download-uri?name={m}&version={v}", 200)]),
    (15, [(_GET, "/api/2.0/mlflow/registered-models/alias?name={m}&alias=champion", 200),
          (_GET, "/api/2.0/mlflow-artifacts/artifacts?path=1%2F{r}%2Fartifacts%2Fmodel", 200),
          (_GET, "/api/2.0/mlflow-artifacts/artifacts/1/{r}/artifacts/model/MLmodel", 200)]),
    (15, [(_GET, "/api/2.0/mlflow/registered-models/alias?name={m}&alias=champion", 200)]),
    (10, [(_GET, "/api/2.0/mlflow/model-versions/search?filter=name%3D%27{m}%27", 200)]),
    (4, [(_GET, "/api/2.0/mlflow/registered-models/search", 200)]),
    (3, [(_POST, "/api/2.0/mlflow/registered-models/create", 400),
         (_POST, "/api/2.0/mlflow/model-versions/create", 200)]),
    (3, [(_GET, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=team-{v}", 404),
         (_POST, "/api/2.0/mlflow/experiments/create", 200)]),
    (4.5, [(_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
           (_POST, "/api/2.0/mlflow/registered-models/get-latest-versions", 200)]),
    (0.5, [(_GET, "/api/2.0/mlflow/model-versions/get?name={m}&version=9999", 404)]),
]
_WEIGHTS = [w for w, _ in OPERATIONS]
# A batch (the nightly job, the CI pipeline), per model: a run, the version, its accuracy, the alias moved to it.
NIGHTLY: list[tuple[str, str, int]] = [
    (_POST, "/api/2.0/mlflow/runs/create", 200), (_POST, "/api/2.0/mlflow/model-versions/create", 200),
    (_POST, "/api/2.0/mlflow/runs/log-metric", 200), (_GET, "/api/2.0/mlflow/registered-models/get?name={m}", 200),
    (_POST, "/api/2.0/mlflow/registered-models/alias", 200)]


def activity(hours_before_now: float) -> float:
    """The team's traffic at a moment, as a share of a working day's: a working day from 9 to 17
    with ramps either side, a tenth of it at night, a third on weekends."""
    clock = NOW_WEEKDAY * 24 + NOW_HOUR - hours_before_now
    weekday = int(clock // 24) % 7
    hour = clock % 24
    if 9 <= hour < 17:
        day = 1.0
    elif 7 <= hour < 9:
        day = 0.1 + 0.9 * (hour - 7) / 2
    elif 17 <= hour < 20:
        day = 1.0 - 0.9 * (hour - 17) / 3
    else:
        day = 0.1
    return day * (0.33 if weekday >= 5 else 1.0)


@dataclass(frozen=True)
class Request:
    t: float
    method: str
    path: str
    status: int
    host: str
    latency_s: float


def requests(now: float, duration_s: float, ops_per_s: float, seed: int = 7) -> Iterator[Request]:
    """The requests of the ``duration_s`` before ``now``, oldest first: operations at
    ``ops_per_s`` times :func:`activity` (a Poisson process), each with its calls a few
    milliseconds apart, and the nightly job."""
    rng = random.Random(seed)
    start = now - duration_s
    peak = ops_per_s
    t = start
    batches = _nightly_times(now, duration_s, rng)
    while True:
        t += rng.expovariate(peak)  # thinning: candidates at the peak rate, kept at activity's share
        while batches and batches[0] <= t:
            yield from _batch(batches.pop(0), rng)
        if t >= now:
            return
        if rng.random() >= activity((now - t) / 3600):
            continue
        host = rng.choice(HOSTS)
        model = rng.choice(MODELS)
        run = f"{rng.getrandbits(128):032x}"
        version = str(rng.randint(1, 40))
        at = t
        for method, path, status in rng.choices(OPERATIONS, _WEIGHTS)[0][1]:
            latency = min(rng.lognormvariate(math.log(0.012), 0.8), 0.9)
            yield Request(at, method, path.format(m=model, v=version, r=run), status, host, latency)
            at += latency + 0.002


def _nightly_times(now: float, duration_s: float, rng: random.Random) -> list[float]:
    """When a batch of versions is registered: the nightly training job at NIGHTLY_HOUR, and the
    team's CI pipeline in working hours, every 20 to 60 minutes."""
    hours_since = (NOW_HOUR - NIGHTLY_HOUR) % 24
    last = now - hours_since * 3600
    times = [last - k * DAY for k in range(int(duration_s // DAY) + 1) if last - k * DAY >= now - duration_s]
    t = now - duration_s
    while (t := t + rng.uniform(1200, 3600)) < now - 60:
        if activity((now - t) / 3600) >= 0.9:
            times.append(t)
    return sorted(times)


def _batch(at: float, rng: random.Random) -> Iterator[Request]:
    """A version of every model registered and made champion, one model after the other."""
    host = rng.choice(HOSTS)
    for model in MODELS:
        for method, path, status in NIGHTLY:
            latency = min(rng.lognormvariate(math.log(0.02), 0.6), 0.9)
            yield Request(at, method, path.format(m=model), status, host, latency)
            at += latency + 0.01
        at += rng.uniform(0.2, 2.0)


def nginx_line(request: Request) -> str:
    """The request as the demo's nginx logs it (registry.NGINX_CONF's format)."""
    when = datetime.fromtimestamp(request.t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = 2 if request.status >= 400 else 180
    return (f'{request.host} - - [{when}] "{request.method} {request.path} HTTP/1.1" {request.status} {size} '
            f'"-" "{USER_AGENT}" rt={request.latency_s:.3f} uct="0.000" urt="{request.latency_s:.3f}"\n')


def write(path: Path, now: float, duration_s: float, ops_per_s: float, seed: int = 7) -> int:
    """The history as an nginx access log at ``path``; the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with path.open("w", encoding="utf-8") as out:
        buffered: list[str] = []
        for request in requests(now, duration_s, ops_per_s, seed):
            buffered.append(nginx_line(request))
            if len(buffered) >= 10_000:
                out.writelines(buffered)
                lines += len(buffered)
                buffered.clear()
        out.writelines(buffered)
        lines += len(buffered)
    return lines
