"""Least-privilege API keys for regwatch's services, from the role descriptors in ``roles.yaml``.

``create_keys`` invalidates the service's earlier keys (by name) and creates a new one, so a
re-run rotates them; each key is written to ``<folder>/<service>.key`` (mode 0600, created with
``O_EXCL`` in a fresh temporary name and renamed, so no existing file or link is written through).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from elasticsearch import Elasticsearch

KEY_PREFIX = "regwatch-"
SERVICES = ("shipper", "probe", "inventory", "rules", "viewer")  # the ones that run with a key of their own


def role_descriptors(namespace: str = "*") -> dict[str, dict[str, Any]]:
    """Every service's role descriptor, its ``{namespace}`` index names narrowed to ``namespace``
    (``*``: every namespace)."""
    roles = yaml.safe_load(resources.files("pipeline").joinpath("roles.yaml").read_text())
    for descriptor in roles.values():
        for entry in descriptor.get("indices", []):
            entry["names"] = [name.replace("{namespace}", namespace) for name in entry["names"]]
    return roles


def _write_secret(path: Path, value: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, value.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def create_keys(client: Elasticsearch, folder: Path, services: list[str] | None = None,
                owner: tuple[int, int] | None = None, namespace: str = "*") -> dict[str, str]:
    """One API key per service; returns service -> key id (never the key). ``owner``: (uid, gid)
    the files are given to, for services running as another user; ``namespace``: the one the
    shipper's and the probe's keys may write (``*``: any)."""
    descriptors = role_descriptors(namespace)
    wanted = services or list(SERVICES)
    unknown = [s for s in wanted if s not in descriptors]
    if unknown:
        raise KeyError(f"no role for {', '.join(unknown)} (known: {', '.join(descriptors)})")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = {}
    for service in wanted:
        name = KEY_PREFIX + service
        client.security.invalidate_api_key(name=name)
        key = client.security.create_api_key(name=name, role_descriptors={name: descriptors[service]},
                                             metadata={"application": "regwatch", "service": service})
        path = folder / f"{service}.key"
        _write_secret(path, key["encoded"])
        if owner is not None:
            os.chown(path, *owner, follow_symlinks=False)
        made[service] = key["id"]
    return made
