"""One timed HTTP request of a check and what it says: up, or down with its reason.

Every failure is a result, never an exception: a probe that dies on a refused connection tells
nobody the registry is down. Reasons are few and stable (they are ``error.type`` in the documents
and a label in alerts): ``dns``, ``connection_refused``, ``connect_error``, ``timeout``, ``tls``,
``http_5xx``, ``unexpected_status``, ``unexpected_body``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class CheckResult:
    target: str
    environment: str
    url: str
    step: str  # "health" or a synthetic transaction step
    up: bool
    started: float  # epoch seconds
    duration_s: float
    status: int | None = None
    reason: str | None = None  # why it is down
    message: str | None = None
    body: Any = None  # the parsed JSON answer, for the steps after this one (not indexed)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_reason(exc: httpx.HTTPError) -> str:
    """The reason a request that got no answer failed."""
    chain = _chain(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in str(exc) \
            or "nodename nor servname" in str(exc):
        return "dns"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "tls"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in str(exc):
        return "connection_refused"
    return "connect_error"


def timed_request(client: httpx.Client, method: str, url: str, *, target: str, environment: str, step: str,
                  expected_status: list[int], judge: Callable[[httpx.Response], str | None] | None = None,
                  **kwargs: Any) -> CheckResult:
    """Send one request; ``judge`` may find a bad body (returns a reason) in an answer with a good status."""
    started = time.time()
    clock = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        return CheckResult(target, environment, url, step, False, started, time.perf_counter() - clock,
                           reason=failure_reason(exc), message=str(exc)[:500] or type(exc).__name__)
    duration = time.perf_counter() - clock
    status = response.status_code
    if status not in expected_status:
        reason = "http_5xx" if status >= 500 else "unexpected_status"
        return CheckResult(target, environment, url, step, False, started, duration, status, reason,
                           response.text[:200])
    problem = judge(response) if judge else None
    if problem is not None:
        return CheckResult(target, environment, url, step, False, started, duration, status, "unexpected_body",
                           problem)
    try:
        body = response.json()
    except ValueError:
        body = None
    return CheckResult(target, environment, url, step, True, started, duration, status, body=body)
