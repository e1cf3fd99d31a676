"""The documents of HTTP access lines (nginx, gunicorn, uvicorn, nginx JSON), built in one step.

``events.event_document`` builds any event from the fields a format extracted, one dict of them
per line. An access log's lines are nearly all one shape, and what most of a document says
depends only on the request: its route, dataset, categorization, URL, model, message and error
are the same for every line of ``GET /api/2.0/mlflow/registered-models/get?name=m 200``. Profiled
(cProfile and timing each stage, 200k nginx lines): building the document was 55 % of a line's
time, the regular expression 17 %, orjson 25 %. So the request's part is worked out once per
distinct (method, target, status) and the document is built directly from the line's own values.

The document is byte for byte what ``event_document`` gives for the same line
(``tests/test_parse_speedpaths.py`` compares the two on generated lines). Its top level and its
``event`` and ``modelregistry`` objects are its own (the shipper adds ``event.ingested``, the
attribution a model); the other objects (``data_stream``, ``url``, ``user_agent``, ``source``,
``error``, ``modelregistry.artifact``, ``ecs``, ``service``, ``host``) are shared between
documents and are never changed.

Memory: each cache is cleared past ``CACHE_LIMIT`` entries and keeps no request target (with
its body) longer than ``http.REQUEST_CACHE_TARGET`` and no agent or address longer than
``VALUE_CACHE_LENGTH`` (``document_caches``). Measured with tracemalloc, the worst these bounds allow (4096 distinct
requests of 250-character targets, as many distinct 250-character agents and addresses) is 12 MB
per input; a registry's log, a few hundred distinct requests and agents, well under 1 MB.
"""

from __future__ import annotations

from typing import Any

from contract.traffic import failure_kind
from parsers.document_caches import CACHE_LIMIT, VALUE_CACHE_LENGTH, DocumentCaches
from parsers.events import ParseContext
from parsers.formats.http import REQUEST_CACHE_TARGET, _copy_model, _request, split_request_line
from parsers.routes import Router

__all__ = ["CACHE_LIMIT", "VALUE_CACHE_LENGTH", "HttpDocuments"]

# (category, type, dataset, action, outcome, data_stream, url, operation, model, artifact, message,
#  error, failure): what a (method, target, status) gives every document of its lines
_Signature = tuple[list[str], list[str], str, str, str, dict[str, str], dict[str, str], str,
                   dict[str, Any] | None, dict[str, str] | None, str, dict[str, str] | None, str | None]


class HttpDocuments(DocumentCaches):
    """Builds the documents of one input's HTTP access lines (one context, platform and route table)."""

    def __init__(self, ctx: ParseContext, platform: str, router: Router) -> None:
        super().__init__(ctx, platform)
        self.router = router
        self._signatures: dict[tuple[Any, ...], _Signature] = {}
        self._request_lines: dict[str, tuple[str, str, str | None] | None] = {}

    def request_line(self, request: str) -> tuple[str, str, str | None] | None:
        """``http.split_request_line``, worked out once per distinct request line (nginx JSON's
        ``request``: a log repeats its few hundred)."""
        lines = self._request_lines
        if request in lines:
            return lines[request]
        split = split_request_line(request)
        if len(request) <= REQUEST_CACHE_TARGET:
            if len(lines) >= CACHE_LIMIT:
                lines.clear()
            lines[request] = split
        return split

    def _signature(self, method: str, target: str, status: int, body: str | None) -> _Signature:
        failed = status >= 400
        route, path, query, artifact, model = _request(method, target, self.router, failed, body)
        dataset, category, ecs_type, outcome = route._heads[failed]  # type: ignore[attr-defined]
        data_stream = {"type": "logs", "dataset": dataset, "namespace": self.ctx.namespace}
        url = {"path": path, "query": query} if query else {"path": path}
        error = failure = None
        if failed:
            error = {"message": f"HTTP {status}", "type": "server_error" if status >= 500 else "client_error"}
            failure = failure_kind(status, None)
        return ([category], [ecs_type], dataset, route.action, outcome, data_stream, url,
                route._operation,  # type: ignore[attr-defined]
                model, None if artifact is None else {"path": artifact}, f"{method} {path} {status}", error, failure)

    def signature(self, method: str, target: str, status: int, body: str | None = None) -> _Signature:
        """What a request determines (route, dataset, URL, model, message, error, failure), kept
        for the next line of the same request unless the request is longer than
        ``REQUEST_CACHE_TARGET`` (a hostile line's 400 KB method is used, not kept)."""
        key = (method, target, status) if body is None else (method, target, status, body)
        signature = self._signatures.get(key)
        if signature is None:
            signature = self._signature(method, target, status, body)
            if len(method) + len(target) + (0 if body is None else len(body)) <= REQUEST_CACHE_TARGET:
                if len(self._signatures) >= CACHE_LIMIT:
                    self._signatures.clear()
                self._signatures[key] = signature
        return signature

    def document(self, ts: str, method: str, target: str, version: str | None, status: int, size: int | None,
                 client: str | None, user: str | None, referrer: str | None, ua: str | None,
                 duration: int | None, raw: str, zone: str | None = None, body: str | None = None
                 ) -> dict[str, Any]:
        """The document of one request. ``client``: the address as logged (an IP or a name, None
        for none); ``user``, ``referrer``, ``ua``: None or empty when the line has none; ``zone``:
        the input's time zone a zone-less time was read in (``event.timezone``); ``body``: a
        logged request body that is a JSON object (it names the model of a write)."""
        signature = self._signatures.get((method, target, status) if body is None else (method, target, status, body))
        if signature is None:
            signature = self.signature(method, target, status, body)
        (category, ecs_type, dataset, action, outcome, data_stream, url, operation, model, artifact, message, error,
         failure) = signature
        event: dict[str, Any] = {"kind": "event", "category": category, "type": ecs_type, "dataset": dataset,
                                 "action": action, "outcome": outcome}
        if duration is not None:
            event["duration"] = duration
        if self.keep_original:
            event["original"] = raw
        if zone:
            event["timezone"] = zone
        http: dict[str, Any] = {
            "request": {"method": method} if referrer is None else {"method": method, "referrer": referrer},
            "response": {"status_code": status} if size is None else {"status_code": status, "body": {"bytes": size}},
        }
        if version is not None:
            http["version"] = version
        doc: dict[str, Any] = {"@timestamp": ts, "data_stream": data_stream, "event": event, "http": http, "url": url}
        if client is not None:
            doc["source"] = self.source(client)
        if user:
            doc["user"] = {"name": user}
        registry = self._registry(doc, operation, self.platform, ua)
        if model:
            registry["model"] = _copy_model(model)
        if artifact is not None:
            registry["artifact"] = artifact
        doc["modelregistry"] = registry
        doc["message"] = message
        if error is not None:
            doc["error"] = error
            registry["failure"] = failure
        doc.update(self._common or self.common())
        return doc
