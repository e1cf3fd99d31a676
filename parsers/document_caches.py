"""What the one-step document builders (HTTP access lines, audit records) keep between lines.

A log repeats its clients, agents and the input's own fields on every line: each is made into its
part of a document once and shared by every document that carries it (never changed after).

Memory: each cache is cleared past ``CACHE_LIMIT`` entries and keeps no agent or address longer
than ``VALUE_CACHE_LENGTH`` (a hostile line's 40 KB agent is used, not kept).
"""

from __future__ import annotations

from typing import Any

from contract.traffic import PROBE_USER_AGENT_PREFIX
from parsers.events import ParseContext, common_fields
from parsers.formats.http import is_ip

CACHE_LIMIT = 4096
VALUE_CACHE_LENGTH = 256  # longer user agents and addresses are not kept (a hostile line's 40 KB agent)


class DocumentCaches:
    """The shared parts of one input's documents (one context and platform)."""

    def __init__(self, ctx: ParseContext, platform: str) -> None:
        self.ctx = ctx
        self.platform = platform
        self.format = ctx.format
        self.keep_original = ctx.keep_original
        self._agents: dict[str, tuple[dict[str, str], bool]] = {}
        self._sources: dict[str, dict[str, str]] = {}
        self._common: dict[str, Any] | None = None

    def source(self, client: str) -> dict[str, str]:
        """``source``: ``{"ip": ...}`` for an IP address, ``{"address": ...}`` for a name."""
        source = self._sources.get(client)
        if source is None:
            source = {"ip": client} if is_ip(client) else {"address": client}
            if len(client) <= VALUE_CACHE_LENGTH:
                if len(self._sources) >= CACHE_LIMIT:
                    self._sources.clear()
                self._sources[client] = source
        return source

    def agent(self, ua: str) -> tuple[dict[str, str], bool]:
        """``user_agent`` and whether the agent is the probe's (contract.traffic)."""
        agent = self._agents.get(ua)
        if agent is None:
            agent = ({"original": ua}, ua.startswith(PROBE_USER_AGENT_PREFIX))
            if len(ua) <= VALUE_CACHE_LENGTH:
                if len(self._agents) >= CACHE_LIMIT:
                    self._agents.clear()
                self._agents[ua] = agent
        return agent

    def _registry(self, doc: dict[str, Any], operation: str, platform: str, ua: str | None) -> dict[str, Any]:
        """``modelregistry``'s first fields, and ``user_agent`` when the line names one (the
        probe's request: not a user's, ``modelregistry.synthetic``, contract.traffic)."""
        registry: dict[str, Any] = {"operation": operation, "platform": platform, "format": self.format}
        if ua:
            agent, synthetic = self.agent(ua)
            doc["user_agent"] = agent
            if synthetic:
                registry["synthetic"] = True
        return registry

    def common(self, platform: str | None = None) -> dict[str, Any]:
        """ecs.*, service.* and host.* of the input's platform, or of the one a record names
        (``events.common_fields``)."""
        if platform is not None and platform != self.platform:
            return common_fields(self.ctx, platform)
        common = self._common
        if common is None:
            common = self._common = common_fields(self.ctx, self.platform)
        return common
