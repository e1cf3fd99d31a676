"""JSON-lines audit logs: the regwatch canonical schema, Databricks, and AWS CloudTrail.

Each record is one JSON object on one line. Audit records name the action (not an HTTP path),
so they are routed by the route table's ``audit`` section.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contract.validation import first_problem
from parsers.audit_documents import FIELDS, AuditDocuments
from parsers.document_caches import CACHE_LIMIT, VALUE_CACHE_LENGTH
from parsers.errors import ParseError
from parsers.formats.access import Parsed
from parsers.formats.http import PLAN_SHAPE_KEPT, load_json_object, model_fields
from parsers.routes import Router, kebab
from parsers.timestamps import parse_any
from parsers.values import json_loads, status_code

_load = load_json_object


def _timestamp(value: Any) -> str:
    try:
        return parse_any(value)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, OSError) as exc:
        raise ParseError(f"bad timestamp {value!r}: {exc}", "bad_timestamp") from None


_kebab = kebab  # an action the route table does not know: Router.unknown_audit names it


# -- canonical ---------------------------------------------------------------------------------


class CanonicalModel(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None
    version: str | int | None = None
    alias: str | None = None
    stage: str | None = None
    new_name: str | None = None


class CanonicalAudit(BaseModel):
    """The regwatch canonical audit record (docs/audit-schema.md)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    timestamp: str | float | int = Field(alias="@timestamp")
    entity: str = Field(min_length=1)
    action: str = Field(min_length=1)
    platform: str | None = None
    delivery_id: str | None = None
    model: CanonicalModel = Field(default_factory=CanonicalModel)
    tags: dict[str, str] | None = None
    user: str | None = None
    user_email: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    workspace: str | None = None
    outcome: str = "success"
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None

    @field_validator("outcome")
    @classmethod
    def _outcome(cls, value: str) -> str:
        if value not in ("success", "failure"):
            raise ValueError("success or failure")
        return value


_LONG = 2**63
# The text fields of a record, in the order parse_canonical reads them
_CANONICAL_TEXT = ("platform", "delivery_id", "user", "user_email", "source_ip", "user_agent", "workspace",
                   "error_code", "error_message")
_MODEL_KEYS = ("name", "version", "alias", "stage", "new_name")


def _plain_int(value: Any) -> bool:
    return value.__class__ is int and -_LONG < value < _LONG


def _canonical_fast(raw: dict[str, Any]) -> tuple[Any, ...] | None:
    """The record's values (timestamp, entity, action, ``_CANONICAL_TEXT``, outcome, status, tags,
    ``modelregistry.model`` without its tag) when every field already has the type the schema asks
    for (what nearly every line of a real audit log has), as ``CanonicalAudit`` would give them;
    None for anything else, which pydantic then validates (and names the problem of)."""
    get = raw.get
    ts = get("@timestamp")
    if not (ts.__class__ is str or ts.__class__ is float or _plain_int(ts)):
        return None
    entity, action = get("entity"), get("action")
    if entity.__class__ is not str or action.__class__ is not str or not entity or not action:
        return None
    texts = tuple(map(get, _CANONICAL_TEXT))
    for value in texts:  # (a loop: cheaper than a set of their types)
        if value is not None and value.__class__ is not str:
            return None
    outcome = get("outcome", "success")
    if outcome != "success" and outcome != "failure":
        return None
    status = get("status_code")
    if status is not None and not _plain_int(status):
        return None
    tags = get("tags")
    if tags is not None:
        if tags.__class__ is not dict:
            return None
        for value in tags.values():
            if value.__class__ is not str:
                return None
    model: dict[str, Any] = {}  # modelregistry.model, read as it is checked
    if "model" in raw:
        named = raw["model"]
        if named.__class__ is not dict:
            return None
        for key in _MODEL_KEYS:
            value = named.get(key)
            if value is not None:
                if value.__class__ is str:
                    model[key] = value
                elif key == "version" and _plain_int(value):
                    model[key] = str(value)
                else:
                    return None
    return ts, entity, action, texts, outcome, status, tags, model


def parse_canonical(text: str, router: Router, ctx: Any = None, docs: AuditDocuments | None = None
                    ) -> Parsed | dict[str, Any]:
    """A record's fields (or, given ``docs``, its finished document)."""
    raw = _load(text)
    if "@timestamp" not in raw and "timestamp" in raw:
        raw["@timestamp"] = raw.pop("timestamp")
    fast = _canonical_fast(raw)
    if fast is None:
        try:
            validated = CanonicalAudit.model_validate(raw)
        except ValidationError as exc:
            raise ParseError(f"wrong field type: {first_problem(exc)}", "wrong_type") from None
        values = validated.__dict__
        named = validated.model.__dict__
        fast = (validated.timestamp, validated.entity, validated.action, tuple(map(values.get, _CANONICAL_TEXT)),
                validated.outcome, validated.status_code, validated.tags,
                {key: str(named[key]) for key in _MODEL_KEYS if named.get(key) is not None})
    ts, entity, action, texts, outcome, status, tags, model = fast
    platform, delivery, user, email, source_ip, ua, workspace, error_code, error_message = texts
    route = router.audit(f"{entity}.{action}") or router.unknown_audit(entity, action)
    ts = _timestamp(ts)
    if tags:
        tag_key, tag_value = next(iter(tags.items()))
        model["tag"] = {"key": tag_key, "value": tag_value}
    failed = outcome == "failure" or (status or 0) >= 400 or bool(error_code)
    if status is not None:
        status = status_code(status, "status_code")
    error_type = "audit_failure" if failed and error_code is None and status is None else None
    return (docs or FIELDS).document(ts, route, failed, status, source_ip, user, email, ua, model, delivery, entity,
                                     workspace, None, None, None, error_code, error_message, error_type, platform,
                                     text)


# -- Databricks --------------------------------------------------------------------------------


def _str_or_none(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ParseError(f"wrong field type: {name} is a {type(value).__name__}", "wrong_type")


def _dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json_loads(value)
        except ValueError:
            raise ParseError(f"wrong field type: {name} is not a JSON object", "wrong_type") from None
    if not isinstance(value, dict):
        raise ParseError(f"wrong field type: {name} is a {type(value).__name__}", "wrong_type")
    return value


# The keys of each field a Databricks record may carry (delivered logs in camelCase, system table
# rows in snake_case, Azure's in PascalCase), those a record may well lack (an agent, a system
# table row's own id) last
_DATABRICKS_KEYS = (("serviceName", "service_name", "ServiceName"), ("actionName", "action_name", "ActionName"),
                    ("timestamp", "event_time", "eventTime", "TimeGenerated"),
                    ("requestParams", "request_params", "RequestParams"), ("response", "Response"),
                    ("userIdentity", "user_identity", "Identity"),
                    ("sourceIPAddress", "source_ip_address", "SourceIPAddress"),
                    ("workspaceId", "workspace_id"), ("requestId", "request_id", "RequestId"),
                    ("userAgent", "user_agent", "UserAgent"), ("event_id", "eventId"))
_PLAN_LIMIT = 256
# A shape's plan: the keys of each field it has and, when it has at most one of each, how its
# values are read in one call: an ``itemgetter`` of its keys and the Nones of the fields it lacks
# when those are the last ones, else its keys (``ABSENT`` for a field it lacks) read in one ``map``
ABSENT: Any = object()  # the key a field the shape lacks is read under: no record has it (not a string)
_DatabricksPlan = tuple[tuple[tuple[str, ...], ...], tuple[Any, ...] | None,
                        Callable[[dict[str, Any]], tuple[Any, ...]] | None, tuple[None, ...]]
_databricks_plans: dict[tuple[str, ...], _DatabricksPlan] = {}


def _databricks_plan(shape: tuple[str, ...], record: dict[str, Any]) -> _DatabricksPlan:
    fields = tuple(tuple(key for key in keys if key in record) for keys in _DATABRICKS_KEYS)
    plan: _DatabricksPlan = (fields, None, None, ())
    if all(len(keys) <= 1 for keys in fields):
        names = tuple(keys[0] if keys else ABSENT for keys in fields)
        present = tuple(name for name in names if name is not ABSENT)
        lacking = len(names) - len(present)
        if len(present) >= 2 and names[len(present):] == (ABSENT,) * lacking:  # (one key: not a tuple)
            plan = (fields, names, itemgetter(*present), (None,) * lacking)
        else:
            plan = (fields, names, None, ())
    if len(shape) <= PLAN_SHAPE_KEPT:
        if len(_databricks_plans) >= _PLAN_LIMIT:
            _databricks_plans.clear()
        _databricks_plans[shape] = plan
    return plan


def _databricks_values(record: dict[str, Any]) -> tuple[Any, ...] | list[Any]:
    """Each field's value (that of its first key with one not None), every field at once, through
    the keys this record's shape has (a plan made once per shape: the records of one source share
    theirs; bounded as nginx JSON's)."""
    shape = tuple(record)
    plan = _databricks_plans.get(shape)
    if plan is None:
        plan = _databricks_plan(shape, record)
    fields, names, getter, lacking = plan
    if getter is not None:  # (a key's value, None included, is the field's when the shape has no other)
        return getter(record) + lacking
    if names is not None:
        return list(map(record.get, names))
    values: list[Any] = []
    for keys in fields:
        for key in keys:
            value = record[key]
            if value is not None:
                values.append(value)
                break
        else:
            values.append(None)
    return values


def parse_databricks(text: str, router: Router, ctx: Any = None, docs: AuditDocuments | None = None
                     ) -> Parsed | dict[str, Any]:
    """Databricks audit log delivery (camelCase) or ``system.access.audit`` rows (snake_case)."""
    record = _load(text)
    (service, action, when, params, response, identity, ip, workspace, request_id, ua,
     event_id) = _databricks_values(record)
    if service is not None and service.__class__ is not str:
        service = _str_or_none(service, "serviceName")
    if action is not None and action.__class__ is not str:
        action = _str_or_none(action, "actionName")
    if not service or not action or when is None:
        raise ParseError("not a Databricks audit record (serviceName, actionName, timestamp)", "missing_field")
    route = router.audit(f"{service}.{action}") or router.unknown_audit(service, action)
    ts = _timestamp(when)
    params = params if params.__class__ is dict else _dict(params, "requestParams")
    model = model_fields(params, router.audit_params) if params else {}
    if "catalog" in model or "schema" in model:
        catalog, schema = model.pop("catalog", None), model.pop("schema", None)
        if catalog and schema and "name" in model and model["name"].count(".") < 2:
            model["name"] = f"{catalog}.{schema}.{model['name']}"  # Unity Catalog: the three-level name
    response = response if response.__class__ is dict else _dict(response, "response")
    get = response.get  # (the first of each field's keys with a value)
    status = get("statusCode")
    if status is None:
        status = get("status_code")
    if status is not None and not (status.__class__ is int and 100 <= status <= 999):  # (the usual: as it is)
        status = status_code(status, "response.statusCode")
    message = get("errorMessage")
    if message is None:
        message = get("error_message")
    if message is not None and message.__class__ is not str:
        message = _str_or_none(message, "response.errorMessage")
    identity = identity if identity.__class__ is dict else _dict(identity, "userIdentity")
    email = identity.get("email")
    if email is not None and email.__class__ is not str:
        email = _str_or_none(email, "userIdentity.email")
    if ip is not None and ip.__class__ is not str:
        ip = _str_or_none(ip, "sourceIPAddress")
    if ua is not None and ua.__class__ is not str:
        ua = _str_or_none(ua, "userAgent")
    if workspace is not None and workspace.__class__ is not str:
        workspace = _str_or_none(workspace, "workspaceId")
    if request_id is not None and request_id.__class__ is not str:
        request_id = _str_or_none(request_id, "requestId")
    if event_id is not None and event_id.__class__ is not str:
        event_id = _str_or_none(event_id, "event_id")
    failed = (status or 0) >= 400 or bool(message)
    # event.id: system.access.audit's own id, else the request id; event.provider: the Databricks
    # service that logged it
    return (docs or FIELDS).document(ts, route, failed, status, ip, email, email, ua, model, request_id, None,
                                     workspace, event_id, service, None, None, message,
                                     "audit_failure" if failed and status is None else None, None, text)


# -- CloudTrail (SageMaker) --------------------------------------------------------------------

_PACKAGE_ARN = re.compile(r"arn:aws[\w-]*:sagemaker:[^:]*:[^:]*:model-package/([^/]+)/(\d+)$")


# The fields of a CloudTrail record, read in one ``map`` (then checked in the order they always were)
_CLOUDTRAIL_KEYS = ("eventName", "eventTime", "eventSource", "requestParameters", "responseElements", "userIdentity",
                    "sourceIPAddress", "userAgent", "eventID", "awsRegion", "recipientAccountId", "errorCode",
                    "errorMessage")
# ``cloud`` of a region and account (a trail's records name a few: shared between documents, never
# changed) and the model name and version of a package ARN (no regular expression a record):
# each cleared past CACHE_LIMIT entries, none of a text longer than VALUE_CACHE_LENGTH kept
_clouds: dict[tuple[str | None, str | None], dict[str, Any]] = {}
_packages: dict[str, tuple[str, str] | None] = {}


def _cloud(region: str | None, account: str | None) -> dict[str, Any]:
    key = (region, account)
    cloud = _clouds.get(key)
    if cloud is None:
        cloud = {"provider": "aws"}
        if region:
            cloud["region"] = region
        if account:
            cloud["account"] = {"id": account}
        if len(region or "") + len(account or "") <= VALUE_CACHE_LENGTH:
            if len(_clouds) >= CACHE_LIMIT:
                _clouds.clear()
            _clouds[key] = cloud
    return cloud


def _package(arn: str) -> tuple[str, str] | None:
    """The model name and version a model package's ARN names, None for another text."""
    if arn in _packages:
        return _packages[arn]
    m = _PACKAGE_ARN.match(arn)
    named = (m.group(1), m.group(2)) if m else None
    if len(arn) <= VALUE_CACHE_LENGTH:
        if len(_packages) >= CACHE_LIMIT:
            _packages.clear()
        _packages[arn] = named
    return named


def parse_cloudtrail(text: str, router: Router, ctx: Any = None, docs: AuditDocuments | None = None
                     ) -> Parsed | dict[str, Any]:
    record = _load(text)
    if "Records" in record and "eventName" not in record:
        raise ParseError("a CloudTrail file bundle ({\"Records\": [...]}) : ship one record per line",
                         "bundle")
    (name, when, source, params, response, identity, ip, ua, event_id, region, account, code,
     message) = map(record.get, _CLOUDTRAIL_KEYS)
    if name is not None and name.__class__ is not str:
        name = _str_or_none(name, "eventName")
    if not name or when is None:
        raise ParseError("not a CloudTrail record (eventName, eventTime)", "missing_field")
    if source is not None and source.__class__ is not str:
        source = _str_or_none(source, "eventSource")
    route = None
    if router.table.event_source is None or source == router.table.event_source:
        route = router.audit(name)
    route = route or router.unknown_audit(name)
    ts = _timestamp(when)
    if params.__class__ is not dict:
        params = _dict(params, "requestParameters")
    model = model_fields(params, router.audit_params) if params else {}
    if response.__class__ is not dict:
        response = _dict(response, "responseElements")
    package = model.pop("package", None)
    if not package:
        package = response.get("modelPackageArn")
        if package is not None and package.__class__ is not str:
            package = _str_or_none(package, "modelPackageArn")
    if package:
        if (named := _package(package)) is not None:
            model.setdefault("name", named[0])
            model.setdefault("version", named[1])
        elif "name" not in model:
            model["name"] = package
    if identity.__class__ is not dict:
        identity = _dict(identity, "userIdentity")
    user = identity.get("userName")
    if user is not None and user.__class__ is not str:
        user = _str_or_none(user, "userIdentity.userName")
    arn = identity.get("arn")
    if arn is not None and arn.__class__ is not str:
        arn = _str_or_none(arn, "userIdentity.arn")
    if not user and arn:
        user = arn.rsplit("/", 1)[-1]
    if ip is not None and ip.__class__ is not str:
        ip = _str_or_none(ip, "sourceIPAddress")
    if ua is not None and ua.__class__ is not str:
        ua = _str_or_none(ua, "userAgent")
    if event_id is not None and event_id.__class__ is not str:
        event_id = _str_or_none(event_id, "eventID")
    if region is not None and region.__class__ is not str:
        region = _str_or_none(region, "awsRegion")
    if account is not None and account.__class__ is not str:
        account = _str_or_none(account, "recipientAccountId")
    cloud = _cloud(region, account)
    if code is not None and code.__class__ is not str:
        code = _str_or_none(code, "errorCode")
    if not code:
        message = None
    elif message is not None and message.__class__ is not str:
        message = _str_or_none(message, "errorMessage")
    # the record's eventID: its delivery id and event.id; event.provider: the AWS service, as
    # Elastic's AWS integration says it
    return (docs or FIELDS).document(ts, route, bool(code), None, ip, user, None, ua, model, event_id, None, None,
                                     None, source, cloud, code or None, message, "aws_error" if code else None, None,
                                     text)
