"""What the benchmarks ship: distinct nginx lines (plain reads, or a registry's mix of every kind)
and a shipper's configuration for them. The benches' own: nothing here comes from tests/."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regwatch.config import Config


def access_line(seq: int) -> bytes:
    """A registry read with its sequence number in the query string: every line distinct."""
    minute, second = divmod(seq // 100 % 3600, 60)
    stamp = f"25/Nov/2026:10:{minute:02d}:{second:02d} +0000"
    request = f"GET /api/2.0/mlflow/registered-models/get?name=m{seq % 7}&seq={seq} HTTP/1.1"
    return f'127.0.0.1 - - [{stamp}] "{request}" 200 10 "-" "bench" rt=0.001 uct="0.000" urt="0.001"\n'.encode()


NOW = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC)
MODELS = [f"model-{i:03d}" for i in range(200)]
USERS = [f"user{i}" for i in range(40)]
# What a registry serves, by weight: reads dominate, writes are rare, errors a few percent.
REQUESTS = [
    (40, "GET", "/api/2.0/mlflow/registered-models/get?name={m}"),
    (20, "GET", "/api/2.0/mlflow/model-versions/get?name={m}&version={v}"),
    (12, "GET", "/api/2.0/mlflow/model-versions/get-download-uri?name={m}&version={v}"),
    (10, "GET", "/api/2.0/mlflow-artifacts/artifacts/1/{r}/artifacts/model/model.pkl"),
    (5, "GET", "/api/2.0/mlflow/registered-models/search?max_results=100"),
    (3, "POST", "/api/2.0/mlflow/model-versions/create"),
    (2, "POST", "/api/2.0/mlflow/model-versions/transition-stage"),
    (2, "POST", "/api/2.0/mlflow/registered-models/alias"),
    (1, "POST", "/api/2.0/mlflow/registered-models/create"),
    (5, "GET", "/health"),
]
WEIGHTS = [w for w, _, _ in REQUESTS]


def registry_line(seq: int, rng: random.Random, when: datetime) -> bytes:
    """One request of the mix at ``when``, its sequence number in the query string (url.query)."""
    _, method, path = rng.choices(REQUESTS, WEIGHTS)[0]
    path = path.format(m=rng.choice(MODELS), v=rng.randint(1, 30), r=f"{seq:032x}")
    status = rng.choices((200, 404, 500, 503), (96, 2, 1.5, 0.5))[0]
    latency = rng.lognormvariate(-3.5, 0.8)
    sep = "&" if "?" in path else "?"
    return (f'10.0.{seq % 250}.{seq % 7} - {rng.choice(USERS)} [{when:%d/%b/%Y:%H:%M:%S} +0000] '
            f'"{method} {path}{sep}seq={seq} HTTP/1.1" {status} {rng.randint(100, 9000)} "-" '
            f'"mlflow-python-client/3.1.0" rt={latency:.3f} uct="0.000" urt="{latency:.3f}"\n').encode()


def write_log(path: Path, count: int, start: int) -> None:
    """``count`` lines of the mix, sequence numbers from ``start``, over the hour before NOW."""
    rng = random.Random(start)
    began = NOW - timedelta(hours=1)
    with path.open("wb") as handle:
        for i in range(start, start + count):
            handle.write(registry_line(i, rng, began + timedelta(seconds=(i - start) * 3600 / count)))


def config_for(folder: Path, es_url: str, namespace: str, paths: list[str], **extra: object) -> Config:
    """One nginx input, its checkpoint in ``folder``, no metrics port; ``extra`` keys on top."""
    return Config.model_validate({
        "elasticsearch": {"hosts": [es_url]}, "namespace": namespace, "metrics_port": None,
        "checkpoint_file": str(folder / "checkpoints.json"), "poll_interval_s": 0.2,
        "inputs": [{"paths": paths, "format": "nginx"}], **extra})


def config_file(config: Config, path: Path) -> Path:
    """The configuration as a file for ``regwatch ship -c`` (JSON is YAML)."""
    path.write_text(config.model_dump_json(exclude_defaults=True))
    return path


def ship_config(folder: Path, urls: list[str], namespace: str, log: Path, host: str, first: int) -> Path:
    """A shipper of ``log`` as ``host`` that knows every node, listed from the ``first``-th on."""
    folder.mkdir(parents=True)
    hosts = [urls[(first + k) % len(urls)] for k in range(len(urls))]
    return config_file(config_for(folder, hosts[0], namespace, [str(log)], host_name=host,
                                  elasticsearch={"hosts": hosts}), folder / "c.yaml")
