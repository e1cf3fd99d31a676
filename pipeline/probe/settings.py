"""The ``probe:`` section of the configuration: targets, their checks, the host to watch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import httpx
from pydantic import Field, FilePath, field_validator, model_validator

from contract.secrets import SecretError, redact_userinfo, secret_from_env
from contract.validation import Port, StrictModel

# RFC 9110 token: what a header name may be made of
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_BODY_BYTES_LIMIT = 16 * 1024 * 1024


def http_url(url: str) -> str:
    """``url`` if it is an http(s) URL a request can be sent to; ValueError (without the URL's
    user and password) otherwise. httpx parses it; what httpx lets through and a request would
    refuse later (a port past 65535, white space) is refused here."""
    shown = redact_userinfo(url)
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"{shown!r} is not an http(s) URL: it holds white space or a control character")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"{shown!r} is not an http(s) URL: it cannot be parsed") from None
    if parsed.scheme not in ("http", "https") or "://" not in url:
        raise ValueError(f"{shown!r} is not an http(s) URL")
    if not parsed.host:
        raise ValueError(f"{shown!r} is not an http(s) URL: no host")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{shown!r} is not an http(s) URL: port {parsed.port} is outside 1..65535")
    return url


class TransactionSettings(StrictModel):
    """A synthetic registry transaction after the health check (``transactions/<kind>.yaml``)."""

    kind: str = Field("mlflow", pattern=r"^[a-z0-9_-]+$")
    base_url: str | None = None  # default: the scheme and host of the target's URL
    model: str  # the registered model the transaction reads

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        from importlib import resources

        if not resources.files("pipeline.probe").joinpath(f"transactions/{kind}.yaml").is_file():
            raise ValueError(f"no synthetic transaction {kind!r}")
        return kind

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else http_url(url)


class TargetSettings(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str
    environment: str = "default"
    # the whole of each request (connect, TLS, headers, body) ends by then, whatever the server does
    timeout_s: float = Field(5.0, gt=0, le=300)
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=lambda: [200],
                                                                         min_length=1)
    expect_body: str | None = None  # a substring the answer must hold
    # read no more of an answer than this; a longer one is unexpected_body
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=MAX_BODY_BYTES_LIMIT)
    verify_certs: bool = True
    ca_file: FilePath | None = None
    # header name -> the environment variable holding its value (never the value itself)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    transaction: TransactionSettings | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url)

    @field_validator("headers_from_env")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for header, env in headers.items():
            if not _HEADER_NAME.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
            if not _ENV_NAME.match(env):
                raise ValueError(f"{header}: {env!r} is not an environment variable name")
        return headers

    @model_validator(mode="after")
    def _one_authorization(self) -> TargetSettings:
        if "@" in self.url.partition("://")[2].split("/")[0] and any(
                h.lower() == "authorization" for h in self.headers_from_env):
            raise ValueError("the url carries a user and password and headers_from_env sets Authorization "
                             "too: use one of them")
        return self

    def headers(self) -> dict[str, str]:
        """The headers to send, secrets read from the environment now (white space around them
        dropped). SecretError, naming the target, the header and the variable, never the value,
        when a variable is unset, empty, or holds a character a header cannot carry."""
        found = {}
        for header, env in self.headers_from_env.items():
            where = f"probe target {self.name}: headers_from_env.{header}"
            try:
                value = secret_from_env(env)
            except SecretError as exc:
                raise SecretError(f"{where}: {exc}") from None
            if not value.isascii():
                raise SecretError(f"{where}: environment variable {env} holds a character outside ASCII")
            found[header] = value
        return found


class ResourceSettings(StrictModel):
    """Host and registry-process resources, sampled when the probe runs beside the registry."""

    enabled: bool = False
    disk_paths: list[str] = Field(default_factory=lambda: ["/"])
    pid_file: Path | None = None
    process_name: str | None = None


class ProbeSettings(StrictModel):
    interval_s: float = Field(30.0, gt=0, le=86_400)
    targets: list[TargetSettings] = Field(default_factory=list)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    # held while Elasticsearch is away; oldest dropped beyond
    buffer_documents: int = Field(10_000, ge=10, le=10_000_000)
    metrics_port: Port | None = 9465
    metrics_address: str = "127.0.0.1"

    @model_validator(mode="after")
    def _unique(self) -> ProbeSettings:
        names = [t.name for t in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("two targets share a name")
        return self
