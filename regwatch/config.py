"""The one validated configuration model of regwatch.

A YAML file is read with ``yaml.safe_load`` and validated by :class:`Config`; errors name the bad
key (``inputs.0.format: Input should be 'nginx', ...``). Secrets are never written in the file:
the file names the environment variable that holds them.
"""

from __future__ import annotations

import difflib
import math
import os
import stat
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, FilePath, ValidationError, field_validator, model_validator

from contract.secrets import redact_userinfo
from contract.validation import Port, StrictModel, location, message
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
        if "api_key_env" in self.model_fields_set and not os.environ.get(self.api_key_env) \
                and self.api_key_file is None:  # named on purpose, then not set: no key is sent
            found.append(f"api_key_env: {self.api_key_env} is not set or empty: requests go without an API key")
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
    metrics_port: Port | None = 9466  # the runner's /metrics (None: off)
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
    try:
        return Path(entry).expanduser()
    except RuntimeError:  # ~name of no user on this host (pathlib raises RuntimeError, not ValueError)
        raise ValueError(f"{entry!r}: {entry.split('/')[0]} is no user's home on this host") from None


class Config(ShipSettings):
    """The whole configuration: the shipper's settings (:class:`ShipSettings`) and the rest."""

    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    namespace: str = "default"
    inputs: list[InputConfig] = Field(default_factory=list)
    checkpoint_file: Path = Path("/var/lib/regwatch/checkpoints.json")
    metrics_port: Port | None = 9464  # the shipper's /metrics (None: off)
    metrics_address: str = "127.0.0.1"
    rules: RulesConfig = Field(default_factory=RulesConfig)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)  # regwatch inventory

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return valid_namespace(value)

    @field_validator("checkpoint_file")
    @classmethod
    def _checkpoint_file(cls, path: Path) -> Path:
        """A folder here (``/var/lib/regwatch``) is a file name forgotten, told at load, not as the
        checkpoint store's failure to open it."""
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder: name the file in it (e.g. {path / 'checkpoints.json'})")
        return path


def valid_namespace(value: str) -> str:
    """A data stream namespace by Elasticsearch's naming rules, as Fleet enforces them (else ValueError)."""
    if not value or value != value.lower() or not value.isprintable() or any(c in value for c in '-\\/*?"<>| ,#:'):
        raise ValueError("lowercase, no '-', spaces or \\/*?\"<>|,#:")
    if len(value.encode()) > 100:
        raise ValueError("at most 100 bytes")
    return value


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; the message names the key."""


MAX_SECONDS = 7 * 86400  # any setting in seconds (a *_s key): a week, or timers overflow ("1e300")
SHOWN_PROBLEMS = 5  # a file wrong in a thousand places is told by its first few


def _kind_of(raw: object) -> str:
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, str):
        return "text"
    if isinstance(raw, bool):
        return "a yes/no value"
    if isinstance(raw, int | float):
        return "a number"
    return "a value"


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows: ``X | None`` and ``Annotated[X, ...]`` unwrapped."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg) if m is not type(None)]
    return [annotation]


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = get_args(field.annotation) if field is not None and get_origin(field.annotation) is Literal else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _step(annotation: Any, part: int | str) -> tuple[Any, bool]:
    """The type at ``part`` of a value of ``annotation``, and whether ``part`` is a union's tag
    (``webhook`` in ``notifiers.h.webhook.url``: in pydantic's location, not in the file)."""
    members = _members(annotation)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        if len(models) > 1 and part == _tag(model):
            return model, True
    for model in models:
        if isinstance(part, str) and part in model.model_fields:
            return model.model_fields[part].annotation, False
    for member in members:
        origin, args = get_origin(member), get_args(member)
        if origin is list and isinstance(part, int) and args:
            return args[0], False
        if origin is dict and isinstance(part, str) and len(args) == 2:
            return args[1], False
    return None, False


def _walk(loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], Any]:
    """The location as the file writes it (no union tags) and the type that holds its last key."""
    shown: list[int | str] = []
    annotation: Any = Config
    holder: Any = None
    for part in loc:
        holder = annotation
        annotation, is_tag = _step(annotation, part) if annotation is not None else (None, False)
        if is_tag:
            holder = annotation
        else:
            shown.append(part)
    return tuple(shown), holder


def _problem(err: Any) -> str:
    """One pydantic error as a person reads it: the keys of the file, not our class names."""
    try:
        loc, holder = _walk(tuple(err["loc"]))
    except Exception:  # a location this walk does not know: told as pydantic gives it
        loc, holder = tuple(err["loc"]), None
    kind, given = err["type"], err.get("input")
    if isinstance(given, float) and not math.isfinite(given):  # pydantic: "less than or equal to 86400"
        return f"{location(loc)}: {given} is not a finite number"
    if kind == "missing":
        return f"{location(loc)}: required, and missing"
    if kind == "extra_forbidden":
        models = [m for m in _members(holder) if isinstance(m, type) and issubclass(m, BaseModel)]
        keys = [name for m in models for name in m.model_fields]
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1) if loc else []
        return f"{location(loc)}: unknown key" + (f" (did you mean {close[0]}?)" if close else "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{location(loc)}: should be a mapping of keys (key: value), not {_kind_of(err.get('input'))}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return (f"{location((*loc, ctx.get('discriminator', 'type').strip(chr(39))))}: {ctx.get('tag')!r} is not "
                f"one of {ctx.get('expected_tags', '').replace(chr(39), '')}")
    if kind == "union_tag_not_found":
        ctx = err.get("ctx") or {}
        return f"{location((*loc, ctx.get('discriminator', 'type').strip(chr(39))))}: required, and missing"
    return f"{location(loc)}: {message(err)}"


def config_problems(exc: ValidationError) -> str:
    """Every error (the first :data:`SHOWN_PROBLEMS`), ``; ``-separated, on one line."""
    errors = exc.errors()
    told = "; ".join(_problem(err) for err in errors[:SHOWN_PROBLEMS])
    return told + (f"; and {len(errors) - SHOWN_PROBLEMS} more" if len(errors) > SHOWN_PROBLEMS else "")


def _unbounded(value: object, loc: tuple[int | str, ...] = ()) -> str | None:
    """The first number no timer can hold: a float that is not finite (``.inf``, ``.nan``,
    ``1e400``), or a setting in seconds (``*_s``) of more than :data:`MAX_SECONDS`."""
    if isinstance(value, BaseModel):
        items: list[tuple[int | str, object]] = [(name, getattr(value, name)) for name in type(value).model_fields]
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    elif isinstance(value, dict):
        items = [(key, item) for key, item in value.items() if isinstance(key, str)]
    else:
        return None
    for key, item in items:
        where = location((*loc, key))
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where}: {item} is not a finite number"
        if isinstance(item, float | int) and not isinstance(item, bool) and str(key).endswith("_s") \
                and item > MAX_SECONDS:
            return f"{where}: {item:g} s is more than {MAX_SECONDS // 86400} days"
        if (found := _unbounded(item, (*loc, key))) is not None:
            return found
    return None


def others_can_change(path: Path, euid: int | None = None) -> str | None:
    """Run as root: why a user other than root could change what ``path`` says (the file, or a
    folder on its way, theirs or writable by them), or None. Such a file decides what root reads,
    where it sends the API key, which certificate authority it trusts; so it is refused, as
    Filebeat's ``strict.perms`` and sshd's ``StrictModes`` refuse theirs."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return None
    try:
        real = path.resolve(strict=True)
        if not stat.S_ISREG(real.stat().st_mode):  # a folder, a pipe, a device: the reader refuses it
            return None
    except (OSError, RuntimeError):  # missing, or a loop of links: the reader says so
        return None
    for item in (real, *real.parents):
        try:
            info = item.stat()
        except OSError:
            return None
        mode, sticky = stat.S_IMODE(info.st_mode), bool(info.st_mode & stat.S_ISVTX)
        what = "file" if item == real else "folder"
        if info.st_uid not in (0, euid):
            return f"the {what} {item} belongs to uid {info.st_uid}, not root"
        if mode & stat.S_IWOTH and not (what == "folder" and sticky):
            return f"the {what} {item} is writable by every user (mode {mode:04o})"
        if mode & stat.S_IWGRP and info.st_gid != 0 and not (what == "folder" and sticky):
            return f"the {what} {item} is writable by group {info.st_gid} (mode {mode:04o})"
    return None


def _refuse_if_others_can_change(path: Path, key: str, config_path: Path) -> None:
    if (why := others_can_change(path)) is not None:
        where = f"{config_path}: {key}: " if key else f"{config_path}: "
        raise ConfigError(f"{where}{why}: run as root, regwatch reads only files root alone can change")


def load_config(path: Path | None) -> Config:
    """The configuration in ``path``; every default when no file is named."""
    if path is None:
        return Config()
    _refuse_if_others_can_change(Path(path), "", path)
    try:
        raw = load_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file holds {_kind_of(raw)}, not a mapping of keys (such as namespace: "
                          "default)")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {config_problems(exc)}") from None
    if (problem := _unbounded(config)) is not None:
        raise ConfigError(f"{path}: {problem}")
    for key, named in (("elasticsearch.ca_file", config.elasticsearch.ca_file),
                       ("elasticsearch.api_key_file", config.elasticsearch.api_key_file),
                       *((f"inputs.{i}.routes", spec.routes) for i, spec in enumerate(config.inputs))):
        if named is not None:
            _refuse_if_others_can_change(Path(named), key, path)
    return config
