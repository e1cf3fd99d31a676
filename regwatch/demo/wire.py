"""What the workload put on the wire, seen from inside the real MLflow client.

MLflow lets a plugin attach a ``requests`` auth object to every request it sends, tracking and
artifact calls alike (the ``mlflow.request_auth_provider`` entry point, chosen by name with
``MLFLOW_TRACKING_AUTH``). Ours appends the workload's tag to the ``User-Agent`` (so its events can
be told from the probe's and other clients'), presents the thread's bearer token when it has one
(the demo's incident 2: a client whose token was revoked at the gateway), and records every
response's method, path and status with the operation the thread was doing. With the client's
retries off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) one record is one request in the access log.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

NAME = "regwatch-workload"
TAG_ENV = "REGWATCH_WORKLOAD_TAG"
# The token the demo's nginx has revoked (registry.NGINX_CONF answers 401 to it before MLflow).
REVOKED_TOKEN = "revoked-3f9c2a7e-ci-deploy-bot"

_current = threading.local()
_sink: Callable[[dict[str, Any]], None] | None = None


def user_agent_tag(run_id: str) -> str:
    return f"regwatch-workload/1 run={run_id}"


def listen(sink: Callable[[dict[str, Any]], None]) -> None:
    """Every response from now on goes to ``sink`` as one record."""
    global _sink
    _sink = sink


def doing(client: int, op: str) -> None:
    """The operation this thread's next requests belong to."""
    _current.client, _current.op = client, op


def presenting(token: str | None) -> None:
    """The bearer token this thread's requests carry from now on (None: no Authorization header)."""
    _current.token = token


class _Recorder:
    """A ``requests`` auth object: tags the request and records its response."""

    def __call__(self, request: Any) -> Any:
        tag = os.environ.get(TAG_ENV, "regwatch-workload/1")
        request.headers["User-Agent"] = f"{request.headers.get('User-Agent', '')} {tag}".strip()
        if token := getattr(_current, "token", None):
            request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._record)
        return request

    @staticmethod
    def _record(response: Any, *args: Any, **kwargs: Any) -> Any:
        if _sink is not None:
            _sink({"type": "request", "t": time.time(), "client": getattr(_current, "client", None),
                   "op": getattr(_current, "op", None), "method": response.request.method,
                   "path": urlsplit(response.request.url).path, "status": response.status_code})
        return response


class WorkloadAuthProvider:
    """The MLflow plugin (``RequestAuthProvider``'s two methods; MLflow calls them by name)."""

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> _Recorder:
        return _Recorder()
