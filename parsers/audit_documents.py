"""The documents of audit records (regwatch canonical, Databricks, CloudTrail), built in one step.

``events.event_document`` builds any event from a dict of the fields a format extracted: the
format fills the dict, the builder looks every possible field up again. Profiled with py-spy
(``--function``, 100k records of each audit format, parse plus orjson): ``event_document`` was
25-29 % of a record's time and filling its dict another 20 %. A record's formats now hand their
values straight to ``AuditDocuments.document``, which builds the document directly, with what
depends only on the route (dataset, categorization, action, operation, ``data_stream``) worked
out once per distinct route and failure.

The document is byte for byte what ``event_document`` gives for the same values
(``AuditFields`` gives the fields it would be given; ``tests/test_parse_speedpaths.py`` compares the
two on generated records). Its top level and its ``event`` and ``modelregistry`` objects are its
own; ``data_stream``, the event's category and type lists, ``http``, ``source``, ``user_agent``,
``cloud`` (CloudTrail's, one a region and account), ``ecs``, ``service`` and ``host`` are shared
between documents and never changed.

Memory: the route cache keeps at most ``CACHE_LIMIT`` routes, none whose action is longer than
``VALUE_CACHE_LENGTH`` (an unknown action of a hostile record); the message cache as many, none
of an action, model name and version longer than that together; sources and agents as
``document_caches`` says.
"""

from __future__ import annotations

from typing import Any

from contract.traffic import failure_kind
from parsers.document_caches import CACHE_LIMIT, VALUE_CACHE_LENGTH, DocumentCaches
from parsers.events import ParseContext, _message
from parsers.formats.http import is_ip
from parsers.routes import Route, Router

# (event template without duration/original/id/provider, data_stream, operation, action)
_Heads = tuple[dict[str, Any], dict[str, str], str, str]


class AuditDocuments(DocumentCaches):
    """Builds the documents of one input's audit records (one context, platform and route table)."""

    def __init__(self, ctx: ParseContext, platform: str, router: Router) -> None:
        super().__init__(ctx, platform)
        self.router = router
        self._heads: dict[tuple[str, str, bool], _Heads] = {}
        self._responses: dict[int, dict[str, Any]] = {}
        self._messages: dict[tuple[str, Any, Any, int | None, bool], str] = {}

    def _route_heads(self, route: Route, failed: bool) -> _Heads:
        key = (route.kind, route.action, failed)
        heads = self._heads.get(key)
        if heads is None:
            dataset, category, ecs_type, outcome = route._heads[failed]  # type: ignore[attr-defined]
            heads = ({"kind": "event", "category": [category], "type": [ecs_type], "dataset": dataset,
                      "action": route.action, "outcome": outcome},
                     {"type": "logs", "dataset": dataset, "namespace": self.ctx.namespace},
                     route._operation, route.action)  # type: ignore[attr-defined]
            if len(route.action) <= VALUE_CACHE_LENGTH:
                if len(self._heads) >= CACHE_LIMIT:
                    self._heads.clear()
                self._heads[key] = heads
        return heads

    def document(self, ts: str, route: Route, failed: bool, status: int | None, ip: str | None, user: str | None,
                 email: str | None, ua: str | None, model: dict[str, Any] | None, delivery: str | None,
                 entity: str | None, workspace: str | None, event_id: str | None, provider: str | None,
                 cloud: dict[str, Any] | None, error_code: str | None, error_message: str | None,
                 error_type: str | None, platform: str | None, raw: str) -> dict[str, Any]:
        """The document of one record. Each value as the document carries it, None (or empty)
        when the record has none: ``ip`` the client's address or name, ``delivery`` the record's id
        (``modelregistry.audit.delivery_id``, and ``event.id`` unless ``event_id`` names another),
        ``entity`` what the action was done to, ``platform`` the record's own (else the input's)."""
        heads = self._heads.get((route.kind, route.action, failed))
        template, data_stream, operation, action = heads if heads is not None else self._route_heads(route, failed)
        event = template.copy()
        if self.keep_original:
            event["original"] = raw
        doc: dict[str, Any] = {"@timestamp": ts, "data_stream": data_stream, "event": event}
        if status is not None:
            response = self._responses.get(status)
            if response is None:  # a status is 100 to 999: at most 900 of them
                response = self._responses[status] = {"response": {"status_code": status}}
            doc["http"] = response
        if ip:
            doc["source"] = self._sources.get(ip) or self.source(ip)
        if user or email:
            if not email:
                doc["user"] = {"name": user}
            elif not user:
                doc["user"] = {"email": email}
            else:
                doc["user"] = {"name": user, "email": email}
        platform = platform or self.platform
        registry: dict[str, Any] = {"operation": operation, "platform": platform, "format": self.format}
        if ua:  # (DocumentCaches._registry, inline)
            agent = self._agents.get(ua) or self.agent(ua)
            doc["user_agent"] = agent[0]
            if agent[1]:
                registry["synthetic"] = True
        name = version = None
        if model:
            registry["model"] = model
            name, version = model.get("name"), model.get("version")
        if delivery:
            registry["audit"] = {"delivery_id": delivery, "entity": entity} if entity else {"delivery_id": delivery}
        if workspace:
            registry["workspace"] = workspace
        if cloud:
            doc["cloud"] = cloud
        if event_id or delivery:
            event["id"] = event_id or delivery
        if provider:
            event["provider"] = provider
        doc["modelregistry"] = registry
        key = (action, name, version, status, failed)
        message = self._messages.get(key)
        if message is None:
            message = self._message(key, model)
        doc["message"] = message
        if failed:
            error: dict[str, Any] = {}
            if error_code:
                error["code"] = error_code
            if error_message:
                error["message"] = error_message
            elif status is not None:
                error["message"] = f"HTTP {status}"
            if error_type:
                error["type"] = error_type
            elif status is not None:
                error["type"] = "server_error" if status >= 500 else "client_error"
            doc["error"] = error
            registry["failure"] = failure_kind(status, error_code)
        common = self._common  # the input's platform (nearly every record): no call
        doc.update(common if platform is self.platform and common is not None else self.common(platform))
        return doc


    def _message(self, key: tuple[str, Any, Any, int | None, bool], model: dict[str, Any] | None) -> str:
        """``events._message`` of a record, kept for the next of the same action, model name and
        version, status and outcome (a registry's records repeat a few hundred); not kept for a
        name or version longer than ``VALUE_CACHE_LENGTH`` (the action is bounded as the route's)."""
        action, name, version, status, failed = key
        message = _message(action, None, None, None, status, model, failed)
        if len(action) + len(str(name or "")) + len(str(version or "")) <= VALUE_CACHE_LENGTH:
            if len(self._messages) >= CACHE_LIMIT:
                self._messages.clear()
            self._messages[key] = message
        return message


class AuditFields:
    """The general path: the same values as the fields ``events.event_document`` builds the
    document from (a parser without ``docs``; the reference the one-step documents are compared
    with). A format hands its values to ``(docs or FIELDS).document``."""

    def document(self, ts: str, route: Route, failed: bool, status: int | None, ip: str | None, user: str | None,
                 email: str | None, ua: str | None, model: dict[str, Any] | None, delivery: str | None,
                 entity: str | None, workspace: str | None, event_id: str | None, provider: str | None,
                 cloud: dict[str, Any] | None, error_code: str | None, error_message: str | None,
                 error_type: str | None, platform: str | None, raw: str) -> tuple[Route, bool, dict[str, Any]]:
        """The route, whether the record failed, and its fields (``AuditDocuments.document``'s values)."""
        f: dict[str, Any] = {"ts": ts}
        named = {"status": status, "user": user, "email": email, "ua": ua, "model": model, "delivery_id": delivery,
                 "entity": entity, "workspace": workspace, "event_id": event_id, "provider": provider,
                 "cloud": cloud, "error_code": error_code, "error_message": error_message, "error_type": error_type,
                 "platform": platform}
        f.update((key, value) for key, value in named.items() if value is not None)
        if ip:
            f["ip" if is_ip(ip) else "source_address"] = ip
        return route, failed, f


FIELDS = AuditFields()
