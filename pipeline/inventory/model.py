"""What the inventory knows of a registry at one moment: its models, versions, aliases, lineage.

Plain frozen values, compared by the diff and rebuilt from the documents already written (so a
restarted collector carries on where the last one stopped, and writes nothing twice).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

FINAL_RUN_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: its run's (or MLflow 3 logged model's) metrics and params."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifact_uri: str | None = None
    final: bool = True  # the run has ended: its metrics will not change (else read again)


@dataclass(frozen=True)
class VersionState:
    model: str
    version: str
    status: str = ""
    stage: str = ""
    source: str = ""
    run_id: str | None = None
    model_id: str | None = None
    description: str = ""
    created: int | None = None  # epoch ms, as MLflow has them
    updated: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    lineage: Lineage | None = None  # None: not read yet (the budget ran out, or nothing to read)

    @property
    def key(self) -> str:
        return entity_key("model_version", self.model, self.version)

    def digest(self) -> str:
        return digest_of(asdict(self))


@dataclass(frozen=True)
class ModelState:
    name: str
    description: str = ""
    created: int | None = None
    updated: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version

    @property
    def key(self) -> str:
        return entity_key("registered_model", self.name)

    def digest(self) -> str:
        return digest_of(asdict(self))


@dataclass
class Snapshot:
    """A registry read whole. ``complete`` False: a listing was cut short (budget, an answer
    that ended early), so what is absent may still exist and no deletion is inferred from it."""

    registry: str
    models: dict[str, ModelState] = field(default_factory=dict)
    versions: dict[tuple[str, str], VersionState] = field(default_factory=dict)
    complete: bool = True


def entity_key(entity: str, name: str, sub: str | None = None) -> str:
    """``["model_version","m","3"]``: what a document is the state or a change of, unambiguous
    whatever characters a name holds (JSON-quoted)."""
    parts = [entity, name] if sub is None else [entity, name, sub]
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def digest_of(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=list)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
