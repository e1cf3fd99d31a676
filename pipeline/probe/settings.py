"""The ``probe:`` section of the configuration: targets, their checks, the host to watch."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, FilePath, field_validator, model_validator

from parsers.validation import StrictModel


class TransactionSettings(StrictModel):
    """A synthetic registry transaction after the health check (``transactions/<kind>.yaml``)."""

    kind: str = "mlflow"
    base_url: str | None = None  # default: the scheme and host of the target's URL
    model: str  # the registered model the transaction reads


class TargetSettings(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str
    environment: str = "default"
    timeout_s: float = Field(5.0, gt=0, le=300)
    expected_status: list[int] = Field(default_factory=lambda: [200])
    expect_body: str | None = None  # a substring the answer must hold
    verify_certs: bool = True
    ca_file: FilePath | None = None
    # header name -> the environment variable holding its value (never the value itself)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    transaction: TransactionSettings | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    def headers(self) -> dict[str, str]:
        """The headers to send, secrets read from the environment now."""
        return {name: os.environ.get(env, "") for name, env in self.headers_from_env.items()}


class ResourceSettings(StrictModel):
    """Host and registry-process resources, sampled when the probe runs beside the registry."""

    enabled: bool = False
    disk_paths: list[str] = Field(default_factory=lambda: ["/"])
    pid_file: Path | None = None
    process_name: str | None = None


class ProbeSettings(StrictModel):
    interval_s: float = Field(30.0, gt=0)
    targets: list[TargetSettings] = Field(default_factory=list)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    buffer_documents: int = Field(10_000, ge=10)  # held while Elasticsearch is away; oldest dropped beyond
    metrics_port: int | None = Field(9465, ge=1, le=65535)
    metrics_address: str = "127.0.0.1"

    @model_validator(mode="after")
    def _unique(self) -> ProbeSettings:
        names = [t.name for t in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("two targets share a name")
        return self
