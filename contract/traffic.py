"""Whose traffic an event is, and what kind of failure it answers: two fields of the event contract.

**Synthetic traffic.** The probe (``regwatch probe``) sends every request with a ``User-Agent``
of its own, ``regwatch-probe/<version>``; a parser that reads that agent on an access line marks
the event ``modelregistry.synthetic: true``. Both sides read the prefix from here, so they cannot
disagree. Events of users carry no such field (never ``false``): a filter that leaves the probe
out is written ``not modelregistry.synthetic : true``, which also keeps every event indexed before
the field existed.

**Failure kinds.** ``event.outcome: failure`` is any answer of 400 and above (ECS), but many of
those are a client's ordinary control flow: MLflow's own client asks ``get-experiment-by-name``
and gets 404 before it creates the experiment, and registering a version of an existing model
answers 400 ``RESOURCE_ALREADY_EXISTS`` to the ``create registered model`` it sends first.
``modelregistry.failure`` says which kind a failed call is, so rules and panels count the failures
that mean something is wrong (server errors, refused credentials, throttling) and not the others.
"""

from __future__ import annotations

from typing import Any

SYNTHETIC_FIELD = "modelregistry.synthetic"
PROBE_USER_AGENT_PREFIX = "regwatch-probe/"
# KQL (rules' ``kql:``, Kibana): the traffic of people and their programs, not the probe's
USER_TRAFFIC_KQL = f"not {SYNTHETIC_FIELD} : true"


def probe_user_agent(version: str) -> str:
    """The ``User-Agent`` of every request the probe sends."""
    return PROBE_USER_AGENT_PREFIX + version


def is_synthetic(user_agent: str | None) -> bool:
    """A request the probe sent (its ``User-Agent``)."""
    return user_agent is not None and user_agent.startswith(PROBE_USER_AGENT_PREFIX)


FAILURE_FIELD = "modelregistry.failure"
# The kinds of ``modelregistry.failure`` (only on failed calls):
SERVER = "server"  # 5xx: the registry or its proxy failed
AUTH = "auth"  # 401, 403: credentials missing or refused
THROTTLED = "throttled"  # 429: too many requests
CONTROL_FLOW = "control_flow"  # 404, 400 RESOURCE_ALREADY_EXISTS: the client's ordinary questions
CLIENT = "client"  # any other 4xx: a request the client got wrong
UNKNOWN = "unknown"  # a failure with neither status nor a known error code (some audit records)
FAILURE_KINDS = (SERVER, AUTH, THROTTLED, CONTROL_FLOW, CLIENT, UNKNOWN)
# what the error-rate rule and panel count by default
COUNTED_FAILURES = (SERVER, AUTH, THROTTLED)
# the same, as a Lucene query string (a rule's ``numerator``) and in Kibana's checked KQL subset
COUNTED_FAILURES_QUERY = f"{FAILURE_FIELD}:({' OR '.join(COUNTED_FAILURES)})"
COUNTED_FAILURES_KQL = " or ".join(f'{FAILURE_FIELD} : "{kind}"' for kind in COUNTED_FAILURES)

# Error codes the registries send, by the kind of failure (MLflow's ``ErrorCode`` names, the
# Databricks REST API's, AWS's); a code decides over the status, which an audit record may lack.
_CODES = {
    "RESOURCE_ALREADY_EXISTS": CONTROL_FLOW, "RESOURCE_DOES_NOT_EXIST": CONTROL_FLOW,
    "NOT_FOUND": CONTROL_FLOW, "ENDPOINT_NOT_FOUND": CONTROL_FLOW,
    "ResourceNotFound": CONTROL_FLOW, "ResourceNotFoundException": CONTROL_FLOW,
    "ConflictException": CONTROL_FLOW, "ResourceInUse": CONTROL_FLOW,
    "UNAUTHENTICATED": AUTH, "PERMISSION_DENIED": AUTH, "CUSTOMER_UNAUTHORIZED": AUTH,
    "AccessDenied": AUTH, "AccessDeniedException": AUTH, "UnauthorizedOperation": AUTH,
    "ExpiredTokenException": AUTH, "InvalidClientTokenId": AUTH,
    "REQUEST_LIMIT_EXCEEDED": THROTTLED, "TOO_MANY_REQUESTS": THROTTLED,
    "ThrottlingException": THROTTLED, "Throttling": THROTTLED, "RequestLimitExceeded": THROTTLED,
    "INTERNAL_ERROR": SERVER, "TEMPORARILY_UNAVAILABLE": SERVER, "SERVICE_UNDER_MAINTENANCE": SERVER,
    "InternalFailure": SERVER, "InternalServerError": SERVER, "ServiceUnavailable": SERVER,
}


def failure_kind(status: int | None, error_code: str | None = None) -> str:
    """The kind of a failed call, from its error code when the registry named a known one, else
    from its status."""
    if error_code:
        kind = _CODES.get(error_code)
        if kind is not None:
            return kind
    if status is None:
        return UNKNOWN
    if status >= 500:
        return SERVER
    if status in (401, 403):
        return AUTH
    if status == 429:
        return THROTTLED
    if status == 404:
        return CONTROL_FLOW
    return CLIENT if status >= 400 else UNKNOWN


FORMAT_FIELD = "modelregistry.format"
AUDIT_TRAIL_FORMAT = "audit"  # the audit receiver's records (and audit files in regwatch's own schema)
# the audit trail's records, as Query DSL and in Kibana's checked KQL subset
AUDIT_TRAIL_QUERY: dict[str, Any] = {"term": {FORMAT_FIELD: AUDIT_TRAIL_FORMAT}}
AUDIT_TRAIL_KQL = f'{FORMAT_FIELD} : "{AUDIT_TRAIL_FORMAT}"'


def actions(calls: int, trail: int) -> int:
    """The registry actions a bucket holds, from its count of access-log records (``calls``: every
    record that is not the audit trail's) and of audit-trail records: each action once."""
    return max(calls, trail)
