"""Route tables: data (YAML) that says which request or audit action is which kind of event.

Lookups are dictionary hits, not regex scans: exact API paths by ``(method, path)``, then a short
list of prefixes, so routing costs the same for a table of 10 routes or 500.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from contract.validation import StrictModel, problems
from contract.yamlfile import YamlFileError, load_yaml
from parsers.categorization import categorization

Kind = Literal["registration", "retrieval", "version", "access"]
Operation = Literal["registration", "retrieval", "version", "other"]
ModelField = Literal["name", "version", "alias", "stage", "new_name", "tag_key", "tag_value", "package", "catalog",
                     "schema"]


class Route(StrictModel):
    kind: Kind
    action: str

    @property
    def operation(self) -> Operation:
        return self._operation  # type: ignore[attr-defined]

    def categorization(self, failed: bool) -> tuple[str, str]:
        """ECS (event.category, event.type) of this route's events (parsers.categorization)."""
        return self._categorized[failed]  # type: ignore[attr-defined]

    def model_post_init(self, __context: object) -> None:
        # Precomputed: read once per line on the hot path.
        object.__setattr__(self, "_operation", "other" if self.kind == "access" else self.kind)
        object.__setattr__(self, "_categorized", {failed: categorization(self.kind, self.action, failed)
                                                  for failed in (False, True)})
        # (dataset, event.category, event.type, event.outcome) of its events, by whether they failed
        object.__setattr__(self, "_heads", tuple(
            ("modelregistry." + ("error" if failed else self.kind), *categorization(self.kind, self.action, failed),
             "failure" if failed else "success") for failed in (False, True)))


class HttpRoute(Route):
    method: str
    path: str


class PrefixRoute(Route):
    method: str
    prefix: str
    artifact_path: bool = False


class HttpTable(StrictModel):
    api_prefixes: list[str] = Field(default_factory=list)
    params: dict[str, ModelField] = Field(default_factory=dict)
    routes: list[HttpRoute] = Field(default_factory=list)
    prefix_routes: list[PrefixRoute] = Field(default_factory=list)
    paths: list[HttpRoute] = Field(default_factory=list)
    default_action: str = "http-request"


class RouteTable(StrictModel):
    platform: str
    http: HttpTable = Field(default_factory=HttpTable)
    audit: dict[str, Route] = Field(default_factory=dict)
    # Other names an audit source logs a service under -> the name ``audit`` keys use.
    services: dict[str, str] = Field(default_factory=dict)
    params: dict[str, ModelField] = Field(default_factory=dict)
    event_source: str | None = None


# The longest entity + action an unknown audit action, or path an unknown API call, may have to be
# kept for the next line.
UNKNOWN_AUDIT_KEPT = 256
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def kebab(*parts: str) -> str:
    """``createRegisteredModel``, ``model_version.created`` -> kebab-case words joined by ``-``."""
    words = []
    for part in parts:
        words.extend(_CAMEL.sub("-", part).replace("_", "-").replace(".", "-").lower().split("-"))
    return "-".join(w for w in words if w)


class RouteTableError(ValueError):
    pass


_WORD = re.compile(r"[a-z][a-z_-]*")


class Router:
    """Compiled view of a :class:`RouteTable` for the hot path."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self.platform = table.platform
        self.params = table.http.params
        self.audit_params = table.params
        self._exact: dict[tuple[str, str], Route] = {}
        for prefix in table.http.api_prefixes:
            for route in table.http.routes:
                self._exact[(route.method.upper(), prefix + route.path)] = route
        for route in table.http.paths:
            self._exact[(route.method.upper(), route.path)] = route
        self._prefixes = sorted(table.http.prefix_routes, key=lambda r: len(r.prefix), reverse=True)
        self._api_prefixes = tuple(table.http.api_prefixes)
        self._default = Route(kind="access", action=table.http.default_action)
        self._slug_cache: dict[str, Route] = {}
        self._unknown_audit: dict[tuple[str, ...], Route] = {}
        # parsers.formats.http.fill_request's cache of what each request line gives (bounded there)
        self.requests: dict[tuple[str, str, bool], tuple] = {}
        self._audit = dict(table.audit)
        for alias, service in table.services.items():
            for key, audit_route in table.audit.items():
                if key.startswith(service + "."):
                    self._audit.setdefault(alias + key[len(service):], audit_route)

    def http(self, method: str, path: str) -> tuple[Route, str | None]:
        """The route of a request and, for prefix routes that carry one, the artifact path."""
        route = self._exact.get((method, path))
        if route is not None:
            return route, None
        for prefix_route in self._prefixes:
            if prefix_route.method == method and path.startswith(prefix_route.prefix):
                rest = path[len(prefix_route.prefix):] if prefix_route.artifact_path else None
                return prefix_route, rest
        return self._fallback(path), None

    def _fallback(self, path: str) -> Route:
        for prefix in self._api_prefixes:
            if path.startswith(prefix):
                suffix = path[len(prefix):]
                route = self._slug_cache.get(suffix)
                if route is None:
                    # Ids in paths (logged-models/m-4b6a...) would make actions unbounded:
                    # keep the words, drop anything with a digit, and any "word" longer than an
                    # API's (a 40 KB path segment is no operation's name).
                    slug = "-".join(s for s in suffix.split("/")[:3] if len(s) <= 64 and _WORD.fullmatch(s))
                    route = Route(kind="access", action=f"mlflow-{slug}" if slug else "mlflow-api")
                    if len(suffix) <= UNKNOWN_AUDIT_KEPT:  # a hostile line's 50 KB path: routed, not kept
                        if len(self._slug_cache) > 2048:
                            self._slug_cache.clear()
                        self._slug_cache[suffix] = route
                return route
        return self._default

    def audit(self, key: str) -> Route | None:
        return self._audit.get(key)

    def unknown_audit(self, *parts: str) -> Route:
        """The route of an audit action the table does not know: an access event named by its
        parts in kebab case (``registered_model`` + ``created`` -> ``registered-model-created``).
        Made once per distinct action; bounded (cleared past 2048 actions, as the slug cache; parts
        longer than a real action's, a hostile record's, are not kept)."""
        route = self._unknown_audit.get(parts)
        if route is None:
            route = Route(kind="access", action=kebab(*parts))
            if sum(map(len, parts)) <= UNKNOWN_AUDIT_KEPT:
                if len(self._unknown_audit) >= 2048:
                    self._unknown_audit.clear()
                self._unknown_audit[parts] = route
        return route


def load_table(path: Path) -> RouteTable:
    try:
        return RouteTable.model_validate(load_yaml(path))
    except YamlFileError as exc:
        raise RouteTableError(str(exc)) from None
    except ValidationError as exc:
        raise RouteTableError(f"{path}: {problems(exc)}") from None


@cache
def builtin(name: str) -> Router:
    """A route table shipped in ``parsers/routes/`` (``mlflow``, ``databricks``, ``sagemaker``)."""
    text = resources.files("parsers").joinpath(f"routes/{name}.yaml").read_text()
    return Router(RouteTable.model_validate(yaml.safe_load(text)))


def router_for(path: Path | None, default: str) -> Router:
    return builtin(default) if path is None else Router(load_table(path))
