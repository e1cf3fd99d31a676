"""The one validated configuration model of regwatch.

A YAML file is read with ``yaml.safe_load`` and validated by :class:`Config`; errors name the bad
key (``inputs.0.format: Input should be 'nginx', ...``). Secrets are never written in the file:
the file names the environment variable that holds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, ValidationError, field_validator, model_validator

from contract.secrets import redact_userinfo
from contract.validation import StrictModel, problems
from contract.yamlfile import YamlFileError, load_yaml
from parsers.timestamps import zone_info
from pipeline.inventory.settings import InventorySettings
from pipeline.probe.settings import ProbeSettings
from pipeline.settings import ShipSettings
from rules.notify import Target

FormatName = Literal[
    "nginx", "nginx-json", "gunicorn", "uvicorn", "databricks-audit", "cloudtrail", "audit"
]


class ElasticsearchConfig(StrictModel):
    hosts: list[str] = Field(default_factory=lambda: [os.environ.get("ES_URL", "http://127.0.0.1:9200")],
                             min_length=1)
    api_key_env: str = "ES_API_KEY"
    # A file holding the key (a Docker or Kubernetes secret, what `regwatch setup --api-keys` writes);
    # read at start, never logged. The environment variable wins when both are set.
    api_key_file: FilePath | None = None
    username: str | None = None
    password_env: str = "ES_PASSWORD"
    ca_file: FilePath | None = None
    verify_certs: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    # Learn the cluster's nodes from the first host that answers, at start and after a node
    # fails (the official client's sniffing): list one node, reach them all. Off behind a load
    # balancer or proxy (Elastic Cloud), where the nodes' own addresses are not reachable.
    sniff: bool = False

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            scheme, sep, rest = host.partition("://")
            if not sep or scheme not in ("http", "https") or not rest.strip("/") or any(c.isspace() for c in host):
                raise ValueError(f"{redact_userinfo(host, keep_user=True)!r} is not an http(s) URL")
        return hosts

    def warnings(self) -> list[str]:
        """What is allowed but unsafe: credentials over plain http, a user without a password."""
        found = []
        credentials = self.username is not None or any("@" in h.partition("://")[2].partition("/")[0]
                                                       for h in self.hosts)
        if credentials and any(h.startswith("http://") and not h.startswith(("http://127.", "http://localhost"))
                               for h in self.hosts):
            found.append("basic auth over plain http: the password crosses the network in clear (use https)")
        if self.username is not None and not os.environ.get(self.password_env) and not os.environ.get(self.api_key_env):
            found.append(f"username {self.username!r} but no password in {self.password_env}")
        for host in self.hosts:
            user, sep, _ = host.partition("://")[2].partition("/")[0].rpartition("@")
            if sep and ":" not in user:
                found.append(f"{redact_userinfo(host, keep_user=True)}: a user name without a password")
        return found

    @property
    def shard_wait_s(self) -> float:
        """How long a bulk request may wait inside Elasticsearch for a shard or a mapping: half
        the request timeout, so that the node answers (naming the shard) before the client gives up."""
        return min(60.0, self.request_timeout_s / 2)

    def client_options(self) -> dict:
        """Keyword arguments for ``elasticsearch.Elasticsearch``; secrets read from env here."""
        options: dict = {
            "hosts": self.hosts,
            "request_timeout": self.request_timeout_s,
            "verify_certs": self.verify_certs,
        }
        if self.ca_file is not None:
            options["ca_certs"] = str(self.ca_file)
        if self.sniff:
            options.update(sniff_on_start=True, sniff_on_node_failure=True, min_delay_between_sniffing=10,
                           sniff_timeout=min(self.request_timeout_s, 5.0))
        if api_key := os.environ.get(self.api_key_env):
            options["api_key"] = api_key
        elif self.api_key_file is not None:
            options["api_key"] = self.api_key_file.read_text(encoding="utf-8").strip()
        elif self.username is not None:
            options["basic_auth"] = (self.username, os.environ.get(self.password_env, ""))
        return options


class InputConfig(StrictModel):
    paths: list[str]
    format: FormatName
    routes: FilePath | None = None  # a route table replacing the built-in MLflow one
    service_name: str | None = None  # None: the platform's name (mlflow, databricks, sagemaker)
    service_environment: str | None = None
    # the zone of times the log writes without one (uvicorn's prefix): an IANA name; None: UTC
    timezone: str | None = None
    platform: str | None = None  # None: the route table's platform (mlflow, databricks, sagemaker)
    start_at: Literal["beginning", "end"] = "beginning"
    keep_original: bool = False
    exclude: list[str] | None = None  # file name globs to skip (default: compressed rotations)
    field_map: dict[str, str] = Field(default_factory=dict)  # JSON formats: our field -> their key
    # Files matched through a symbolic link (the file, or a folder a wildcard matched) are skipped,
    # as Filebeat does: a link could lead the shipper into files it was not meant to read.
    follow_symlinks: bool = False

    @field_validator("paths")
    @classmethod
    def _not_empty(cls, paths: list[str]) -> list[str]:
        if not paths:
            raise ValueError("at least one path or glob")
        return paths

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            zone_info(zone)  # ValueError: unknown time zone 'Mars/Olympus'
        return zone


BUILTIN = "builtin"
BUILTIN_RULES = Path(__file__).resolve().parent.parent / "rules" / "builtin"


class RulesConfig(StrictModel):
    # Folders of rule files, read in order; ``builtin`` names regwatch's own rules, so a list
    # without it runs only your own. A rule name is unique across them all. The older ``folder: X``
    # (one folder, replacing the built-ins) is read as ``folders: [X]``.
    folders: list[str] = Field(default_factory=lambda: [BUILTIN], min_length=1)
    notifiers: dict[str, Target] = Field(default_factory=dict)
    runner_id: str | None = None
    kibana_url: str | None = None  # for the dashboard link in notifications
    # a runner with no cycle for this long is reported by the others
    stale_after_s: float = Field(180.0, gt=0, le=7 * 86400, allow_inf_nan=False)
    stale_notify: list[str] = Field(default_factory=list)
    # How long a runner holds an outbox it is delivering: longer than any notifier's timeout. A
    # runner killed mid-send leaves the in-flight notification to the next runner after this.
    lease_s: float = Field(30.0, ge=1, le=3600, allow_inf_nan=False)
    metrics_port: int | None = Field(9466, ge=1, le=65535)  # the runner's /metrics (None: off)
    metrics_address: str = "127.0.0.1"
    # A failed delivery that may pass (timeout, connection, 429, 5xx) is retried after 2 s, 4 s,
    # 8 s... (with jitter) up to this; one that will not (any other 4xx) is dropped and shown.
    retry_max_s: float = Field(600.0, ge=1, le=86400, allow_inf_nan=False)
    # A notifier with no success for this long is shown by `rules status` and /metrics, and
    # raises the notifier-failing alert on the other notifiers (those named here; default all).
    notifier_failing_after_s: float = Field(600.0, gt=0, le=7 * 86400, allow_inf_nan=False)
    notifier_failing_notify: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _folder(cls, data: object) -> object:
        """``folder: X``, the single folder of older configs, is ``folders: [X]`` (as before, without
        the built-ins)."""
        if isinstance(data, dict) and "folder" in data:
            if "folders" in data:
                raise ValueError("give folders (a list; builtin for regwatch's own rules) or the older "
                                 "folder, not both")
            data = {k: v for k, v in data.items() if k != "folder"} | {"folders": [data["folder"]]}
        return data

    @field_validator("folders")
    @classmethod
    def _folders(cls, folders: list[str]) -> list[str]:
        seen: set[Path] = set()
        for entry in folders:
            if not entry.strip():
                raise ValueError("an empty folder name (builtin names regwatch's own rules)")
            path = _rule_folder(entry).resolve()
            if path in seen:
                raise ValueError(f"{entry!r} is listed twice")
            seen.add(path)
        return folders

    @property
    def folder_paths(self) -> list[Path]:
        """The rule folders, in order, ``builtin`` as the built-in rules' folder."""
        return [_rule_folder(entry) for entry in self.folders]

    @field_validator("kibana_url")
    @classmethod
    def _kibana_url(cls, url: str | None) -> str | None:
        """Links in notifications are clicked: only an http(s) URL with a host (no ``javascript:``)."""
        if url is None:
            return None
        from rules.notify.base import check_url

        return check_url(url, "not Kibana's address").rstrip("/")

    @model_validator(mode="after")
    def _notifiers_fit_the_lease(self) -> RulesConfig:
        """A send must end before the outbox lease does, or a second runner sends it too."""
        from rules.notify.base import max_timeout

        bound = max_timeout(self.lease_s)
        for name, target in self.notifiers.items():
            if "timeout_s" in target.model_fields_set and target.timeout_s > bound:
                raise ValueError(f"notifiers.{name}.timeout_s: {target.timeout_s:g} s is more than rules.lease_s "
                                 f"({self.lease_s:g} s) less its margin allows ({bound:g} s)")
        unknown = sorted(set(self.notifier_failing_notify or []) - set(self.notifiers))
        if unknown:
            raise ValueError(f"notifier_failing_notify: no notifier named {', '.join(unknown)}")
        return self


def _rule_folder(entry: str) -> Path:
    """``builtin`` is the built-in rules' folder, ``builtin/<set>`` one of the built-in sets that
    are loaded only when named (``builtin/audit``: the audit trail's heartbeat, for a registry
    whose audit receiver is set up); anything else a path (``./builtin`` for a folder of that name)."""
    if entry == BUILTIN:
        return BUILTIN_RULES
    if entry.startswith(BUILTIN + "/"):
        return BUILTIN_RULES / entry.removeprefix(BUILTIN + "/")
    return Path(entry).expanduser()


class Config(ShipSettings):
    """The whole configuration: the shipper's settings (:class:`ShipSettings`) and the rest."""

    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    namespace: str = "default"
    inputs: list[InputConfig] = Field(default_factory=list)
    checkpoint_file: Path = Path("/var/lib/regwatch/checkpoints.json")
    metrics_port: int | None = Field(9464, ge=1, le=65535)  # the shipper's /metrics (None: off)
    metrics_address: str = "127.0.0.1"
    rules: RulesConfig = Field(default_factory=RulesConfig)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)  # regwatch inventory

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return valid_namespace(value)


def valid_namespace(value: str) -> str:
    """A data stream namespace by Elasticsearch's naming rules, as Fleet enforces them (else ValueError)."""
    if not value or value != value.lower() or not value.isprintable() or any(c in value for c in '-\\/*?"<>| ,#:'):
        raise ValueError("lowercase, no '-', spaces or \\/*?\"<>|,#:")
    if len(value.encode()) > 100:
        raise ValueError("at most 100 bytes")
    return value


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names the key."""


def load_config(path: Path | None) -> Config:
    """The configuration in ``path``; every default when no file is named."""
    if path is None:
        return Config()
    try:
        raw = load_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level is a {type(raw).__name__}, not a mapping of keys")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {problems(exc)}") from None
