"""The ``inventory:`` section of the configuration: which registries to read, how often, within
what budget."""

from __future__ import annotations

import re

from pydantic import Field, FilePath, field_validator, model_validator

from contract.secrets import SecretError, secret_from_env
from contract.validation import Port, StrictModel
from pipeline.probe.settings import http_url

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RegistrySettings(StrictModel):
    """One MLflow tracking server (2.x or 3.x) read through its REST API."""

    name: str = Field("mlflow", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str  # the tracking server's base URL: http(s)://host:port[/prefix]
    # Credentials come from the environment, as MLflow's own client reads them: a bearer token
    # (MLFLOW_TRACKING_TOKEN) or a user and password (MLFLOW_TRACKING_USERNAME/PASSWORD).
    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    verify_certs: bool = True
    ca_file: FilePath | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)
    page_size: int = Field(100, ge=1, le=1000)  # MLflow caps registered-model pages at 1000
    # Requests one poll may send; what is left over (lineage of new versions) is read next poll.
    max_requests_per_poll: int = Field(200, ge=2, le=100_000)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url).rstrip("/")

    @field_validator("token_env", "username_env", "password_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        return name

    @model_validator(mode="after")
    def _one_credential(self) -> RegistrySettings:
        if self.token_env and (self.username_env or self.password_env):
            raise ValueError("token_env and username_env/password_env both set: use one of them")
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("username_env and password_env go together")
        return self

    def credentials(self) -> tuple[str, str] | str | None:
        """A token, a (user, password) pair, or None, read from the environment now. SecretError
        naming the registry and the variable (never its value) when a variable is unset or empty."""
        try:
            if self.token_env:
                return secret_from_env(self.token_env)
            if self.username_env and self.password_env:
                return secret_from_env(self.username_env), secret_from_env(self.password_env)
        except SecretError as exc:
            raise SecretError(f"inventory registry {self.name}: {exc}") from None
        return None


class InventorySettings(StrictModel):
    interval_s: float = Field(60.0, gt=0, le=86_400)
    registries: list[RegistrySettings] = Field(default_factory=list)
    # A registry that does not answer is asked again after 2 s, 4 s, 8 s... up to this.
    backoff_max_s: float = Field(300.0, ge=1, le=86_400)
    metrics_port: Port | None = 9467  # the collector's /metrics (None: off)
    metrics_address: str = "127.0.0.1"

    @model_validator(mode="after")
    def _unique(self) -> InventorySettings:
        names = [r.name for r in self.registries]
        if len(names) != len(set(names)):
            raise ValueError("two registries share a name")
        return self
