"""What the benchmarks ship: distinct nginx lines and a configuration for them (no test code)."""

from __future__ import annotations

from pathlib import Path

from regwatch.config import Config


def access_line(seq: int) -> bytes:
    """A registry read with its sequence number in the query string: every line distinct."""
    minute, second = divmod(seq // 100 % 3600, 60)
    stamp = f"25/Nov/2026:10:{minute:02d}:{second:02d} +0000"
    request = f"GET /api/2.0/mlflow/registered-models/get?name=m{seq % 7}&seq={seq} HTTP/1.1"
    return f'127.0.0.1 - - [{stamp}] "{request}" 200 10 "-" "bench" rt=0.001 uct="0.000" urt="0.001"\n'.encode()


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
