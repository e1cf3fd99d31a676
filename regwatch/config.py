"""The one validated configuration model of regwatch.

A YAML file is read with ``yaml.safe_load`` and validated by :class:`Config`; errors name the bad
key (``inputs.0.format: Input should be 'nginx', ...``). Secrets are never written in the file:
the file names the environment variable that holds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules.notify import Target

FormatName = Literal[
    "nginx", "nginx-json", "gunicorn", "uvicorn", "databricks-audit", "cloudtrail", "audit"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ElasticsearchConfig(Strict):
    hosts: list[str] = Field(default_factory=lambda: [os.environ.get("ES_URL", "http://127.0.0.1:9200")])
    api_key_env: str = "ES_API_KEY"
    username: str | None = None
    password_env: str = "ES_PASSWORD"
    ca_file: Path | None = None
    verify_certs: bool = True
    request_timeout_s: float = 30.0

    def client_options(self) -> dict:
        """Keyword arguments for ``elasticsearch.Elasticsearch``; secrets read from env here."""
        options: dict = {
            "hosts": self.hosts,
            "request_timeout": self.request_timeout_s,
            "verify_certs": self.verify_certs,
        }
        if self.ca_file is not None:
            options["ca_certs"] = str(self.ca_file)
        if api_key := os.environ.get(self.api_key_env):
            options["api_key"] = api_key
        elif self.username is not None:
            options["basic_auth"] = (self.username, os.environ.get(self.password_env, ""))
        return options


class InputConfig(Strict):
    paths: list[str]
    format: FormatName
    routes: Path | None = None  # a route table replacing the built-in MLflow one
    service_name: str = "mlflow"
    service_environment: str | None = None
    platform: str | None = None  # None: the route table's platform (mlflow, databricks, sagemaker)
    start_at: Literal["beginning", "end"] = "beginning"
    keep_original: bool = False
    exclude: list[str] | None = None  # file name globs to skip (default: compressed rotations)
    field_map: dict[str, str] = Field(default_factory=dict)  # JSON formats: our field -> their key

    @field_validator("paths")
    @classmethod
    def _not_empty(cls, paths: list[str]) -> list[str]:
        if not paths:
            raise ValueError("at least one path or glob")
        return paths


class BatchConfig(Strict):
    max_docs: int = Field(2000, ge=1)
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_wait_s: float = Field(0.5, gt=0)


class RulesConfig(Strict):
    folder: Path = Path(__file__).resolve().parent.parent / "rules" / "builtin"
    notifiers: dict[str, Target] = Field(default_factory=dict)
    runner_id: str | None = None
    kibana_url: str | None = None  # for the dashboard link in notifications
    stale_after_s: float = 180.0  # a runner with no cycle for this long is reported by the others
    stale_notify: list[str] = Field(default_factory=list)


class Config(Strict):
    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    namespace: str = "default"
    inputs: list[InputConfig] = Field(default_factory=list)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    queue_max_events: int = Field(10_000, ge=1)
    checkpoint_file: Path = Path("/var/lib/regwatch/checkpoints.json")
    metrics_port: int | None = 9464
    max_line_bytes: int = Field(1024 * 1024, ge=256)
    partial_line_flush_s: float = Field(5.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    host_name: str | None = None
    rules: RulesConfig = Field(default_factory=RulesConfig)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        # Elasticsearch's data stream naming rules, as Fleet enforces them.
        if not value or value != value.lower() or not value.isprintable() or any(c in value for c in '-\\/*?"<>| ,#:'):
            raise ValueError("lowercase, no '-', spaces or \\/*?\"<>|,#:")
        if len(value.encode()) > 100:
            raise ValueError("at most 100 bytes")
        return value


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names the key."""


def load_config(path: Path) -> Config:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
