"""The event model: one ECS-shaped document per line, of one kind, in one data stream.

Parsers build documents as plain dicts on the hot path (a pydantic model per line would cost more
than the parse itself); the pydantic models below are the contract those dicts must meet
(``docs/events.md``). ``validate_document`` checks a document against the model of its kind:
the tests run it on every document they produce, and ``regwatch parse --validate`` does too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, model_validator

from contract import streams
from contract.ecs import ECS
from contract.traffic import FAILURE_KINDS, PROBE_USER_AGENT_PREFIX, failure_kind
from parsers.routes import Route


@dataclass(frozen=True)
class ParseContext:
    """What a parser knows besides the line: the input's configuration."""

    namespace: str = "default"
    format: str = "nginx"
    service_name: str | None = None  # None: the platform's name (mlflow, databricks, sagemaker)
    service_environment: str | None = None
    host_name: str | None = None
    keep_original: bool = False
    platform: str | None = None  # overrides the route table's platform
    max_line_bytes: int = 1024 * 1024
    field_map: dict[str, str] = field(default_factory=dict)  # JSON formats: our key -> theirs
    # the zone of times a log writes without one (uvicorn's logging prefix): an IANA name; None: UTC
    timezone: str | None = None

    def data_stream(self, kind: str) -> dict[str, str]:
        return {"type": "logs", "dataset": streams.dataset(kind), "namespace": self.namespace}


def _common_fields(ctx: ParseContext, platform: str) -> dict[str, Any]:
    """ecs.*, service.* and host.*: the same for every line of an input and platform, built once
    and shared. ``service.name`` is the input's, else the platform's: a SageMaker record is not
    MLflow's."""
    common: dict[str, Any] = {"ecs": ECS}
    service: dict[str, str] = {}
    name = ctx.service_name or platform
    if name:
        service["name"] = name
    if ctx.service_environment:
        service["environment"] = ctx.service_environment
    if service:
        common["service"] = service
    if ctx.host_name:
        common["host"] = {"name": ctx.host_name}
    return common


def context_cache(ctx: ParseContext, name: str) -> dict[Any, Any]:
    """A cache kept on the input's context (frozen: set once, past its ``__setattr__``), so that
    every parser of one input shares it and it goes with the context."""
    cache = ctx.__dict__.get(name)
    if cache is None:
        cache = {}
        object.__setattr__(ctx, name, cache)
    return cache


# Platforms an input's records name (an audit record's own ``platform``): a few in any real log;
# a hostile stream of new long ones is used, not kept.
_COMMON_LIMIT = 256
_COMMON_KEPT_LENGTH = 256


def common_fields(ctx: ParseContext, platform: str) -> dict[str, Any]:
    """``_common_fields`` of this context and platform, made once (shared, never changed)."""
    by_platform = ctx.__dict__.get("_common")
    if by_platform is None:
        by_platform = context_cache(ctx, "_common")
    common = by_platform.get(platform)
    if common is None:
        common = _common_fields(ctx, platform)
        if len(platform) <= _COMMON_KEPT_LENGTH:
            if len(by_platform) >= _COMMON_LIMIT:
                by_platform.clear()
            by_platform[platform] = common
    return common


# Fields most access-log lines lack: looked up only when one of them is present.
_RARE_FIELDS = frozenset({"source_address", "original_request", "email", "artifact_path", "delivery_id",
                          "entity", "workspace", "cloud", "event_id", "provider", "timezone"})


def event_kind(route: Route, failed: bool) -> str:
    """A failed request (status 400 and above) is an error, whatever it tried to do."""
    return "error" if failed else route.kind


def event_document(ctx: ParseContext, route: Route, failed: bool, f: dict[str, Any],
                   platform: str, raw: str | None) -> dict[str, Any]:
    """Build the document of one event from the fields a format parser extracted.

    ``f`` keys: ts, method, path, query, status, bytes, duration_ns, http_version, ip, user,
    email, ua (the probe's marks the event synthetic), referrer, model (dict), artifact_path,
    error_code, error_message, error_type,
    delivery_id, workspace, entity, cloud (dict).

    Every line's document is built here, so this is written for speed: the route's dataset and
    categorization come precomputed (``Route._heads``), fields are looked up only when present,
    and the keys go in the order the documents have always had (tests compare whole documents,
    and ``regwatch parse`` output byte for byte).
    """
    dataset, category, ecs_type, outcome = route._heads[failed]  # type: ignore[attr-defined]
    action = route.action
    event: dict[str, Any] = {"kind": "event", "category": [category], "type": [ecs_type], "dataset": dataset,
                             "action": action, "outcome": outcome}
    doc: dict[str, Any] = {
        "@timestamp": f["ts"],
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": ctx.namespace},
        "event": event,
    }
    if "duration_ns" in f:
        duration = f["duration_ns"]
        if duration is not None:
            event["duration"] = duration
    if raw is not None and ctx.keep_original:
        event["original"] = raw
    status = f.get("status")
    method = f.get("method")
    if method is not None:
        request: dict[str, Any] = {"method": method}
        http: dict[str, Any] = {"request": request}
        if status is not None:
            size = f.get("bytes")
            http["response"] = ({"status_code": status} if size is None
                                else {"status_code": status, "body": {"bytes": size}})
        if "http_version" in f and (version := f["http_version"]) is not None:
            http["version"] = version
        if "referrer" in f and (referrer := f["referrer"]) is not None:
            request["referrer"] = referrer
        doc["http"] = http
    elif status is not None:
        doc["http"] = {"response": {"status_code": status}}
    path = f.get("path")
    if path is not None:
        query = f.get("query")
        doc["url"] = {"path": path, "query": query} if query else {"path": path}
    rare = not f.keys().isdisjoint(_RARE_FIELDS)
    ip = f.get("ip")
    if ip is not None:
        doc["source"] = {"ip": ip}
    elif rare and (address := f.get("source_address")) is not None:
        doc["source"] = {"address": address}
    original_request = f.get("original_request") if rare else None
    name = f.get("user")
    email = f.get("email") if rare else None
    if name or email:
        user: dict[str, str] = {}
        if name:
            user["name"] = name
        if email:
            user["email"] = email
        doc["user"] = user
    registry: dict[str, Any] = {"operation": route._operation,  # type: ignore[attr-defined]
                                "platform": platform, "format": ctx.format}
    ua = f.get("ua")
    if ua:
        doc["user_agent"] = {"original": ua}
        if ua.startswith(PROBE_USER_AGENT_PREFIX):  # the probe's request: not a user's (contract.traffic)
            registry["synthetic"] = True
    model = f.get("model")
    if model:
        registry["model"] = model
    if rare:
        get = f.get
        artifact = get("artifact_path")
        if artifact is not None:
            registry["artifact"] = {"path": artifact}
        delivery = get("delivery_id")
        if delivery:
            registry["audit"] = {"delivery_id": delivery}
            if entity := get("entity"):
                registry["audit"]["entity"] = entity
        workspace = get("workspace")
        if workspace:
            registry["workspace"] = workspace
        cloud = get("cloud")
        if cloud:
            doc["cloud"] = cloud
        if original_request is not None:  # a request line that is no HTTP request: not a URL
            registry["request_line"] = original_request
        event_id = get("event_id") or delivery
        if event_id:
            event["id"] = event_id
        if provider := get("provider"):
            event["provider"] = provider
        if zone := get("timezone"):
            event["timezone"] = zone
    doc["modelregistry"] = registry
    if method is not None and path is not None:  # an HTTP request, as an access log prints it
        doc["message"] = f"{method} {path} {status}" if status is not None else f"{method} {path}"
    else:
        doc["message"] = _message(action, method, path, original_request, status, model, failed)
    if failed:
        error: dict[str, Any] = {}
        error_code = f.get("error_code")
        if error_code:
            error["code"] = error_code
        if message := f.get("error_message"):
            error["message"] = message
        elif status is not None:
            error["message"] = f"HTTP {status}"
        if error_type := f.get("error_type"):
            error["type"] = error_type
        elif status is not None:
            error["type"] = "server_error" if status >= 500 else "client_error"
        doc["error"] = error
        # what kind of failure: the error-rate rule counts server, auth and throttled only
        registry["failure"] = failure_kind(status, error_code)
    doc.update(common_fields(ctx, platform))
    return doc


def _message(action: str, method: str | None, path: str | None, request_line: str | None, status: int | None,
             model: dict[str, Any] | None, failed: bool) -> str:
    """The one line Discover and Logs show for an event: ``GET /path 200`` for an HTTP request (as
    an access log prints it), the action, model and version, and the outcome for an audit record."""
    if method is not None and path is not None:
        return f"{method} {path} {status}" if status is not None else f"{method} {path}"
    if request_line is not None:
        return f"{request_line} {status}" if status is not None else request_line
    parts = [action]
    if model:
        if name := model.get("name"):
            parts.append(name)
        if version := model.get("version"):
            parts.append(f"version {version}")
    if status is not None:
        parts.append(str(status))
    parts.append("failure" if failed else "success")
    return " ".join(parts)


def deadletter_document(ctx: ParseContext, raw: str, reason: str, error_type: str, read_at: str,
                        platform: str | None = None) -> dict[str, Any]:
    """A line that could not become an event: the raw line and the reason (``message`` too, what
    Discover shows), in its own stream. No ``event.outcome``: the request the line records may
    well have succeeded; reading it is what failed (``event.kind: pipeline_error``)."""
    platform = platform or ctx.platform or "unknown"
    dataset = streams.dataset("deadletter")
    doc: dict[str, Any] = {
        "@timestamp": read_at,
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": ctx.namespace},
        "event": {"kind": "pipeline_error", "dataset": dataset, "action": "parse-failed", "original": raw},
        "message": reason,
        "error": {"message": reason, "type": error_type},
        "modelregistry": {"operation": "other", "format": ctx.format, "platform": platform},
    }
    doc.update(common_fields(ctx, platform))
    return doc


# -- the contract, as pydantic models ----------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DataStreamFields(_Doc):
    type: Literal["logs", "metrics"]
    dataset: str
    namespace: str


class EventFields(_Doc):
    kind: str
    category: list[Literal["api", "web", "iam"]] | None = None  # ECS (parsers.categorization)
    type: list[Literal["access", "creation", "deletion", "change", "error", "info"]] | None = None
    dataset: str
    action: str
    outcome: Literal["success", "failure", "unknown"] | None = None  # absent on dead-letters
    id: str | None = None
    provider: str | None = None
    timezone: str | None = None
    duration: int | None = Field(None, ge=0)
    original: str | None = None
    ingested: datetime | None = None


class HttpRequest(_Doc):
    method: str | None = None
    referrer: str | None = None


class HttpBody(_Doc):
    bytes: int = Field(ge=0)


class HttpResponse(_Doc):
    status_code: int | None = Field(None, ge=100, le=999)
    body: HttpBody | None = None


class HttpFields(_Doc):
    request: HttpRequest | None = None
    response: HttpResponse | None = None
    version: str | None = None


class UrlFields(_Doc):
    path: str | None = None
    query: str | None = None


class SourceFields(_Doc):
    ip: IPvAnyAddress | None = None
    address: str | None = None


class UserFields(_Doc):
    name: str | None = None
    email: str | None = None


class UserAgentFields(_Doc):
    original: str


class ErrorFields(_Doc):
    code: str | None = None
    message: str | None = None
    type: str | None = None


class ModelFields(_Doc):
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    new_name: str | None = None
    tag: dict[str, str] | None = None


class AuditFields(_Doc):
    delivery_id: str
    entity: str | None = None


class RegistryFields(_Doc):
    operation: Literal["registration", "retrieval", "version", "other"]
    platform: str
    format: str
    model: ModelFields | None = None
    artifact: dict[str, str] | None = None
    audit: AuditFields | None = None
    workspace: str | None = None
    synthetic: Literal[True] | None = None  # the probe's own request; absent on users' events
    failure: str | None = None  # contract.traffic.FAILURE_KINDS, on failed calls only
    attribution: str | None = None  # how a retrieval was named from the inventory (pipeline.attribution)
    request_line: str | None = None  # a request line that is no HTTP request (not a URL)

    @model_validator(mode="after")
    def _failure_kind(self) -> RegistryFields:
        if self.failure is not None and self.failure not in FAILURE_KINDS:
            raise ValueError(f"modelregistry.failure is one of {', '.join(FAILURE_KINDS)}")
        return self


class LogFile(_Doc):
    path: str
    device_id: str | None = None
    inode: str | None = None
    fingerprint: str | None = None


class LogFields(_Doc):
    file: LogFile
    offset: int = Field(ge=0)


class EventDocument(_Doc):
    """Fields every event document may carry; subclasses pin the kind."""

    kind: ClassVar[str] = ""
    timestamp: datetime = Field(alias="@timestamp")
    ecs: dict[str, str]
    message: str
    data_stream: DataStreamFields
    event: EventFields
    http: HttpFields | None = None
    url: UrlFields | None = None
    source: SourceFields | None = None
    user: UserFields | None = None
    user_agent: UserAgentFields | None = None
    error: ErrorFields | None = None
    modelregistry: RegistryFields
    service: dict[str, str] | None = None
    host: dict[str, str] | None = None
    log: LogFields | None = None
    cloud: dict[str, Any] | None = None
    agent: dict[str, str] | None = None  # the shipper that read the line

    @model_validator(mode="after")
    def _dataset_matches_kind(self) -> EventDocument:
        if self.event.outcome is None and self.kind != "deadletter":
            raise ValueError("an event says its event.outcome")
        expected = streams.dataset(self.kind)
        if self.data_stream.dataset != expected or self.event.dataset != expected:
            raise ValueError(f"dataset must be {expected}")
        return self


class RegistrationEvent(EventDocument):
    kind: ClassVar[str] = "registration"


class RetrievalEvent(EventDocument):
    kind: ClassVar[str] = "retrieval"


class VersionEvent(EventDocument):
    kind: ClassVar[str] = "version"


class AccessEvent(EventDocument):
    kind: ClassVar[str] = "access"


class ErrorEvent(EventDocument):
    kind: ClassVar[str] = "error"

    @model_validator(mode="after")
    def _error_is_described(self) -> ErrorEvent:
        if self.error is None or self.event.outcome != "failure":
            raise ValueError("an error event carries error.* and outcome failure")
        return self


class DeadLetterDocument(EventDocument):
    kind: ClassVar[str] = "deadletter"

    @model_validator(mode="after")
    def _raw_and_reason(self) -> DeadLetterDocument:
        if self.event.original is None or self.error is None or not self.error.message:
            raise ValueError("a dead-letter carries event.original and error.message")
        return self


MODELS: dict[str, type[EventDocument]] = {
    m.kind: m for m in (RegistrationEvent, RetrievalEvent, VersionEvent, AccessEvent, ErrorEvent, DeadLetterDocument)
}


def kind_of(doc: dict[str, Any]) -> str:
    return streams.kind_of_dataset(doc["data_stream"]["dataset"])


def validate_document(doc: dict[str, Any]) -> EventDocument:
    return MODELS[kind_of(doc)].model_validate(doc)
