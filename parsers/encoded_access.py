"""``regwatch parse``'s output for nginx and gunicorn lines: each document's JSON line written
from precomputed byte fragments, without its dict.

The command prints documents and keeps none of them, so a line of the usual shape does not need
its document built and then encoded. Profiled with py-spy (``--function``, ``regwatch parse -f
nginx`` on 1M lines): building the document was 16 % of the command's time, encoding it (orjson)
about 20 %, and the per-line call layers (``parse_encoded``, ``parse``, the command's loop) 18 %.
A document's constant parts depend only on its request (method, target, status: the same
signature ``HttpDocuments`` keeps), its client and its agent; they are encoded once each, and a
line costs only the encoding of what is its own (time, sizes, durations, a user or referrer).

The output is byte for byte ``LineParser.parse_encoded``'s (orjson's encoding of every string,
the same keys in the same order; ``tests/test_parse_speedpaths.py`` compares the two). A line of
another shape (no match of the fast pattern, a bad value, invalid UTF-8, too long) is handed to
``parse_encoded`` as it is, so it gets exactly the document (or dead-letter) it always got.

The shipper ships these lines the same way (``parts``: the document's parts, its own fields
spliced in as fragments of its own, ``pipeline.inputs.line_items``), its documents byte for byte
the dict it built before (``tests/test_shipped_parts.py``). A request whose query is new (a page
token, a run id) takes the fragments of its path and of the model its query names, made once
(``_queried_fragments``), and encodes only its query.

Memory: fragments are kept per signature as ``HttpDocuments`` keeps signatures (``CACHE_LIMIT``
entries, no request longer than ``REQUEST_CACHE_TARGET``), per client and agent as
``document_caches`` keeps them (no value longer than ``VALUE_CACHE_LENGTH``), per path, status and
model parameters of a query (``CACHE_LIMIT``, none of a request longer than ``REQUEST_CACHE_TARGET``), per HTTP version
(no version longer than ``VERSION_KEPT``), and one time stamp (no time longer than ``VERSION_KEPT``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from parsers.document_caches import CACHE_LIMIT, VALUE_CACHE_LENGTH
from parsers.formats.access import COMBINED_FAST, _duration
from parsers.formats.http import REQUEST_CACHE_TARGET, query_pairs
from parsers.timestamps import parse_clf

if TYPE_CHECKING:
    from parsers import LineParser
    from parsers.http_documents import HttpDocuments

VERSION_KEPT = 64  # the longest HTTP version (or time stamp) whose fragment is kept

_dumps = orjson.dumps


def _members(value: dict[str, Any]) -> bytes:
    """An object's members as orjson writes them, without the braces (b"" for none)."""
    return _dumps(value)[1:-1]


# What a consumer that files documents by stream and counts them (the shipper) needs of one, without
# its dict: (data_stream.type, .dataset, .namespace, modelregistry.model.name, modelregistry.failure,
# modelregistry.synthetic, modelregistry.format). One tuple per signature and agent kind, shared.
Meta = tuple[str, str, str, str | None, str | None, bool, str]

# (event's opening, http.request's opening, http.response's opening, url (closing http), the
# registry's opening and closing (without the document's closing brace) as one for a user's
# request and one for the probe's, dataset, and the Meta of each)
_Fragments = tuple[bytes, bytes, bytes, bytes, bytes, bytes, str, Meta, Meta]

# A document's parts (the first one left empty for the caller: the shipper's bulk action line),
# the document without its closing brace; its Meta; whether it has event.duration.
Parts = tuple[list[bytes], Meta, bool]


class EncodedAccessLines:
    """Encodes the documents of one input's nginx or gunicorn lines (``LineParser.encode_block``)."""

    def __init__(self, parser: LineParser, docs: HttpDocuments) -> None:
        self.parser = parser
        self.docs = docs
        self._fragments: dict[tuple[str, str, str], _Fragments] = {}
        # (method, path, status, the query's model parameters) -> fragments, url.query left open
        self._queried: dict[tuple[str, str, int, tuple[tuple[str, str], ...]], _Fragments] = {}
        self._sources: dict[str, bytes] = {}
        self._agents: dict[str, tuple[bytes, bool]] = {}
        self._versions: dict[str, bytes] = {}
        self._when = ""
        self._stamp = b""

    def _signature_fragments(self, method: str, target: str, status: int) -> _Fragments:
        docs = self.docs
        (category, ecs_type, dataset, action, outcome, data_stream, url, operation, model, artifact, message, error,
         failure) = docs.signature(method, target, status)
        event = _dumps({"kind": "event", "category": category, "type": ecs_type, "dataset": dataset,
                        "action": action, "outcome": outcome})[:-1]
        head = b',"data_stream":' + _dumps(data_stream) + b',"event":' + event
        request = b'},"http":{"request":' + _dumps({"method": method})[:-1]
        response = b'},"response":' + _dumps({"status_code": status})[:-1]
        registry = b',"modelregistry":' + _dumps({"operation": operation, "platform": docs.platform,
                                                    "format": docs.format})[:-1]
        rest: dict[str, Any] = {}
        if model:
            rest["model"] = model
        if artifact is not None:
            rest["artifact"] = artifact
        if error is not None:
            rest["failure"] = failure
        members = _members(rest)
        closing = (b"," + members if members else b"") + b'},"message":' + _dumps(message)
        if error is not None:
            closing += b',"error":' + _dumps(error)
        common = _members(docs.common())
        closing += b"," + common if common else b""
        name = model.get("name") if model else None
        meta: Meta = (data_stream["type"], dataset, data_stream["namespace"], name, failure, False, docs.format)
        return (head, request, response, b'},"url":' + _dumps(url), registry + closing,
                registry + b',"synthetic":true' + closing, dataset, meta, meta[:5] + (True, docs.format))

    def _fragments_of(self, method: str, target: str, status: int) -> _Fragments:
        key = (method, target, status)
        fragments = self._fragments.get(key)  # type: ignore[arg-type]
        if fragments is None:
            path, _, query = target.partition("?")
            if query:
                fragments = self._queried_fragments(method, target, path, query, status)
            else:
                fragments = self._signature_fragments(method, target, status)
            if len(method) + len(target) <= REQUEST_CACHE_TARGET:
                if len(self._fragments) >= CACHE_LIMIT:
                    self._fragments.clear()
                self._fragments[key] = fragments  # type: ignore[index]
        return fragments

    def _queried_fragments(self, method: str, target: str, path: str, query: str, status: int) -> _Fragments:
        """The fragments of a request with a query string. Of a query, only ``url.query`` and the
        model its parameters name (``http._request``: the route's ``params`` only) are its own:
        a query seen for the first time (a request id, a page token, the bench's sequence number)
        takes the fragments of its path and model (made once) and encodes its query, instead of
        routing the request and encoding every fragment again."""
        key = (method, path, status, tuple(query_pairs(query, self.docs.router.params)))
        fragments = self._queried.get(key)
        if fragments is None:
            made = self._signature_fragments(method, target, status)
            fragments = (*made[:3], b'},"url":{"path":' + _dumps(path) + b',"query":', *made[4:])
            if len(method) + len(target) <= REQUEST_CACHE_TARGET:
                if len(self._queried) >= CACHE_LIMIT:
                    self._queried.clear()
                self._queried[key] = fragments
        return (*fragments[:3], fragments[3] + _dumps(query) + b"}", *fragments[4:])

    def _source(self, client: str) -> bytes:
        source = self._sources.get(client)
        if source is None:
            source = b',"source":' + _dumps(self.docs.source(client))
            if len(client) <= VALUE_CACHE_LENGTH:
                if len(self._sources) >= CACHE_LIMIT:
                    self._sources.clear()
                self._sources[client] = source
        return source

    def _agent(self, ua: str) -> tuple[bytes, bool]:
        agent = self._agents.get(ua)
        if agent is None:
            original, synthetic = self.docs.agent(ua)
            agent = (b',"user_agent":' + _dumps(original), synthetic)
            if len(ua) <= VALUE_CACHE_LENGTH:
                if len(self._agents) >= CACHE_LIMIT:
                    self._agents.clear()
                self._agents[ua] = agent
        return agent

    def _version(self, version: str) -> bytes:
        fragment = self._versions.get(version)
        if fragment is None:
            fragment = b'},"version":' + _dumps(version)
            if len(version) <= VERSION_KEPT:
                if len(self._versions) >= CACHE_LIMIT:
                    self._versions.clear()
                self._versions[version] = fragment
        return fragment

    def line(self, text: str) -> tuple[bytes, str] | None:
        """The encoded document of one line of the usual shape and its dataset; None for any other
        line (``parse_encoded`` then makes its document). May raise on a bad value: the caller
        hands the line to ``parse_encoded`` then too."""
        done = self.parts(text, b"")
        if done is None:
            return None
        parts, meta, _ = done
        parts.append(b"}\n")
        return b"".join(parts), meta[1]

    def parts(self, text: str, event_tail: bytes) -> Parts | None:
        """The parts of one line's document (:data:`Parts`), ``event_tail`` (members, each with its
        leading comma) written at the end of its ``event`` object: the shipper's ``event.ingested``,
        where ``LineParser.parse``'s document plus that key would have it. None, or an exception,
        for a line of another shape or a bad value, as with :meth:`line`."""
        fast = COMBINED_FAST.fullmatch(text)
        if fast is None:
            return None
        ip, user, when, method, target, version, status, size, referrer, agent, rt, rest = fast.groups()
        if not "100" <= status <= "999" or len(size) > 18:
            return None
        if when == self._when:
            stamp = self._stamp
        else:
            stamp = b'{"@timestamp":' + _dumps(parse_clf(when))
            if len(when) <= VERSION_KEPT:
                self._when, self._stamp = when, stamp
        head, request, response, url, registry, synthetic_registry, _, meta, synthetic_meta = self._fragments_of(
            method, target, int(status))
        parts = [b"", stamp, head]
        timed = True
        if rt is not None:
            seconds = float(rt)
            if seconds >= 9e9:
                return None
            parts.append(b',"duration":%d' % round(seconds * 1e9))
        else:
            duration = _duration(rest) if rest else None
            if duration is not None:
                parts.append(b',"duration":%d' % duration)
            else:
                timed = False
        if event_tail:
            parts.append(event_tail)
        parts.append(request)
        if referrer and referrer != "-":
            parts.append(b',"referrer":' + _dumps(referrer))
        parts.append(response)
        if size != "-":
            parts.append(b',"body":{"bytes":%d}' % int(size))
        parts.append(self._version(version))
        parts.append(url)
        if ip != "-":
            parts.append(self._source(ip))
        if user != "-":
            parts.append(b',"user":{"name":' + _dumps(user) + b"}")
        if agent and agent != "-":
            fragment, synthetic = self._agent(agent)
            parts.append(fragment)
            if synthetic:
                parts.append(synthetic_registry)
                return parts, synthetic_meta, timed
        parts.append(registry)
        return parts, meta, timed


def encoded_parts(parser: LineParser) -> Callable[[str, bytes], Parts | None] | None:
    """The shipper's way to ``parser``'s documents in encoded parts (:meth:`EncodedAccessLines.parts`);
    None when its lines have none (another format, or ``keep_original``)."""
    encoded = parser.encoded
    return None if encoded is None else encoded.parts
