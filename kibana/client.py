"""Putting the saved objects into a user's Kibana, and taking edited ones back out.

Kibana's saved-objects API: ``POST /api/saved_objects/_import?overwrite=true`` (multipart, the
``kbn-xsrf`` header) and ``POST /api/saved_objects/_export``; ``/s/<space>`` in front for a space.
Credentials come from the environment: ``KIBANA_API_KEY``, else ``KIBANA_USERNAME`` and
``KIBANA_PASSWORD``; a private CA from ``KIBANA_CA_CERT`` (a PEM file; ``SSL_CERT_FILE`` works
too, as for every httpx client). docs/kibana.md lists the privileges an import needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx


class KibanaError(Exception):
    """Kibana answered with an error status; the message is Kibana's own."""


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = str(response.json().get("message") or response.text)
    except ValueError:
        message = response.text
    raise KibanaError(f"HTTP {response.status_code}: {message[:500]}")


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _base(url: str, space: str | None) -> str:
    url = url.rstrip("/")
    return f"{url}/s/{space}" if space and space != "default" else url


def _auth_headers() -> dict[str, str]:
    headers = {"kbn-xsrf": "regwatch"}
    if api_key := os.environ.get("KIBANA_API_KEY"):
        headers["Authorization"] = f"ApiKey {api_key}"
    return headers


def _basic_auth() -> tuple[str, str] | None:
    user = os.environ.get("KIBANA_USERNAME")
    return (user, os.environ.get("KIBANA_PASSWORD", "")) if user and not os.environ.get("KIBANA_API_KEY") else None


def _verify(verify: bool | str | None) -> bool | str:
    """The CA to trust: the caller's, else ``KIBANA_CA_CERT``, else the system's (or SSL_CERT_FILE)."""
    if verify is not None:
        return verify
    return os.environ.get("KIBANA_CA_CERT") or True


def import_objects(url: str, ndjson: bytes, space: str | None = None, timeout: float = 60.0,
                   verify: bool | str | None = None) -> ImportReport:
    response = httpx.post(f"{_base(url, space)}/api/saved_objects/_import", params={"overwrite": "true"},
                          files={"file": ("regwatch.ndjson", ndjson, "application/ndjson")},
                          headers=_auth_headers(), auth=_basic_auth(), timeout=timeout, verify=_verify(verify))
    _raise_for_status(response)
    body = response.json()
    report = ImportReport()
    for result in body.get("successResults", []):
        name = f"{result['type']}/{result['id']}"
        (report.updated if result.get("overwrite") else report.created).append(name)
    for error in body.get("errors", []):
        reason = error.get("error", {}).get("type", "error")
        report.failed.append(f"{error.get('type')}/{error.get('id')}: {reason}")
    return report


def export_objects(url: str, objects: list[dict[str, Any]], space: str | None = None, timeout: float = 60.0,
                   verify: bool | str | None = None) -> str:
    """NDJSON of the given objects (and what they reference), one object a line, sorted by type and id.

    Every field Kibana gives is kept: the version fields above all, without which a re-import
    would run every legacy migration of the type.
    """
    response = httpx.post(f"{_base(url, space)}/api/saved_objects/_export",
                          json={"objects": [{"type": o["type"], "id": o["id"]} for o in objects],
                                "includeReferencesDeep": True},
                          headers=_auth_headers(), auth=_basic_auth(), timeout=timeout, verify=_verify(verify))
    _raise_for_status(response)
    lines = []
    for raw in response.text.splitlines():
        obj = json.loads(raw)
        if "exportedCount" in obj:  # the summary line Kibana appends
            continue
        lines.append(((obj.get("type", ""), obj.get("id", "")), json.dumps(obj, sort_keys=True, separators=(",", ":"))))
    return "".join(line + "\n" for _, line in sorted(lines))
