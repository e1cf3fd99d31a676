"""MLflow's REST API as the inventory reads it: GET only, paginated, within a request budget.

Every request is counted against the poll's budget (``max_requests_per_poll``), so a registry of
ten thousand versions costs the same few requests a poll whatever else happens, and the budget's
end is a clean stop (:class:`BudgetSpent`), not a half-read page. A registry that does not answer
(refused, timed out, 5xx, 429) is :class:`RegistryDown`; the collector backs off, and what it
knew stays as it was. TLS is verified unless the configuration says otherwise; credentials come
from the environment and are never logged.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import structlog

from contract.secrets import mask_secrets, redact_userinfo
from pipeline.inventory.settings import RegistrySettings
from pipeline.probe.check import USER_AGENT

log = structlog.get_logger(__name__)
API = "/api/2.0/mlflow"
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # one page of 1000 models with their tags fits many times over


class RegistryDown(Exception):
    """The registry did not answer usefully: the poll ends, the collector backs off."""


class BudgetSpent(Exception):
    """This poll's requests are spent; the rest waits for the next poll."""


class NotFound(Exception):
    """The registry answered 404 (a run or logged model deleted since, an API it does not have)."""


class RegistryClient:
    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.base = settings.url
        self.budget = settings.max_requests_per_poll
        self.sent = 0
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            verify: bool | ssl.SSLContext = self.settings.verify_certs
            if self.settings.verify_certs and self.settings.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(self.settings.ca_file))
            if not self.settings.verify_certs:
                log.warning("inventory_tls_unverified", registry=self.settings.name)
            credentials = self.settings.credentials()
            # the probe's User-Agent: the registry's own logs count these requests as synthetic, not users'
            headers = {"User-Agent": f"{USER_AGENT} inventory", "Accept": "application/json"}
            auth: httpx.BasicAuth | None = None
            if isinstance(credentials, str):
                headers["Authorization"] = f"Bearer {credentials}"
            elif credentials is not None:
                auth = httpx.BasicAuth(*credentials)
            self._client = httpx.Client(verify=verify, headers=headers, auth=auth, trust_env=False,
                                        follow_redirects=False, timeout=self.settings.timeout_s)
        return self._client

    def new_poll(self) -> None:
        """A fresh budget."""
        self.sent = 0

    @property
    def left(self) -> int:
        return self.budget - self.sent

    def _secrets(self) -> list[str]:
        try:
            credentials = self.settings.credentials()
        except Exception:
            return []
        if credentials is None:
            return []
        return [credentials] if isinstance(credentials, str) else list(credentials)

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET {API}/{path}``: the answer's JSON object. BudgetSpent before a request the budget
        does not cover; RegistryDown when the registry does not answer; NotFound on 404."""
        if self.sent >= self.budget:
            raise BudgetSpent()
        self.sent += 1
        url = f"{self.base}{API}/{path}"
        shown = redact_userinfo(url)
        try:
            with self._http().stream("GET", url, params=params) as answer:
                body = b""
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise RegistryDown(f"{shown}: answer larger than {MAX_ANSWER_BYTES} bytes")
        except httpx.HTTPError as exc:
            message = mask_secrets(f"{type(exc).__name__}: {exc}", self._secrets())[:300]
            raise RegistryDown(f"{shown}: {message}") from None
        if answer.status_code == 404:
            raise NotFound(shown)
        if answer.status_code != 200:
            raise RegistryDown(f"{shown}: HTTP {answer.status_code}")
        try:
            data = json.loads(body)  # lone surrogates pass here; values.py makes them valid
        except ValueError:
            raise RegistryDown(f"{shown}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryDown(f"{shown}: the answer is not a JSON object")
        return data

    def pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paginated search (``next_page_token``), page after page."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(params or {}) | {"max_results": self.settings.page_size}
            if token:
                query["page_token"] = token
            data = self.get(path, query)
            items = data.get(key) or []
            if not isinstance(items, list):
                raise RegistryDown(f"{path}: {key} is not a list")
            yield from (item for item in items if isinstance(item, dict))
            token = data.get("next_page_token")
            if not token or not isinstance(token, str) or token in seen:  # a token seen twice: a loop
                return
            seen.add(token)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
