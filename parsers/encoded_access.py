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

Memory: fragments are kept per signature as ``HttpDocuments`` keeps signatures (``CACHE_LIMIT``
entries, no request longer than ``REQUEST_CACHE_TARGET``), per client and agent as
``document_caches`` keeps them (no value longer than ``VALUE_CACHE_LENGTH``), per HTTP version
(no version longer than ``VERSION_KEPT``), and one time stamp (no time longer than ``VERSION_KEPT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from parsers.document_caches import CACHE_LIMIT, VALUE_CACHE_LENGTH
from parsers.formats.access import COMBINED_FAST, _duration
from parsers.formats.http import REQUEST_CACHE_TARGET
from parsers.timestamps import parse_clf

if TYPE_CHECKING:
    from parsers import LineParser
    from parsers.http_documents import HttpDocuments

VERSION_KEPT = 64  # the longest HTTP version (or time stamp) whose fragment is kept

_dumps = orjson.dumps


def _members(value: dict[str, Any]) -> bytes:
    """An object's members as orjson writes them, without the braces (b"" for none)."""
    return _dumps(value)[1:-1]


# (event's opening, http.request's opening, http.response's opening, url (closing http), the
# registry's opening and closing as one for a user's request and one for the probe's, dataset)
_Fragments = tuple[bytes, bytes, bytes, bytes, bytes, bytes, str]


class EncodedAccessLines:
    """Encodes the documents of one input's nginx or gunicorn lines (``LineParser.encode_block``)."""

    def __init__(self, parser: LineParser, docs: HttpDocuments) -> None:
        self.parser = parser
        self.docs = docs
        self._fragments: dict[tuple[str, str, str], _Fragments] = {}
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
        closing += (b"," + common if common else b"") + b"}\n"
        return (head, request, response, b'},"url":' + _dumps(url), registry + closing,
                registry + b',"synthetic":true' + closing, dataset)

    def _fragments_of(self, method: str, target: str, status: int) -> _Fragments:
        key = (method, target, status)
        fragments = self._fragments.get(key)  # type: ignore[arg-type]
        if fragments is None:
            fragments = self._signature_fragments(method, target, status)
            if len(method) + len(target) <= REQUEST_CACHE_TARGET:
                if len(self._fragments) >= CACHE_LIMIT:
                    self._fragments.clear()
                self._fragments[key] = fragments  # type: ignore[index]
        return fragments

    def _source(self, client: str) -> bytes:
        source = self._sources.get(client)
        if source is None:
            source = b',"source":' + _dumps(self.docs._source(client))
            if len(client) <= VALUE_CACHE_LENGTH:
                if len(self._sources) >= CACHE_LIMIT:
                    self._sources.clear()
                self._sources[client] = source
        return source

    def _agent(self, ua: str) -> tuple[bytes, bool]:
        agent = self._agents.get(ua)
        if agent is None:
            original, synthetic = self.docs._agent(ua)
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
        head, request, response, url, registry, synthetic_registry, dataset = self._fragments_of(
            method, target, int(status))
        parts = [stamp, head]
        if rt is not None:
            seconds = float(rt)
            if seconds >= 9e9:
                return None
            parts.append(b',"duration":%d' % round(seconds * 1e9))
        elif rest:
            duration = _duration(rest)
            if duration is not None:
                parts.append(b',"duration":%d' % duration)
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
            parts.append(synthetic_registry if synthetic else registry)
        else:
            parts.append(registry)
        return b"".join(parts), dataset
