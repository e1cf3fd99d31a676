"""ECS categorization of an event (``event.category``, ``event.type``), from its route.

Elastic's own apps filter on these (Security reads ``logs-*`` by category): an HTTP line that is no
registry operation is ``web`` / ``access`` (``error`` when it failed); a registry operation is an
``api`` call, typed by what it does to the registry, read from its action's verb: it creates,
deletes, changes or only reads (``access``). The allowed values are ECS's (``event.category``'s
expected event types, ecs_flat.yml).
"""

from __future__ import annotations

# The verb of an action (a word of its kebab-case name) -> ECS event.type; the first verb found wins
VERB_TYPES: tuple[tuple[str, str], ...] = (
    ("create", "creation"), ("upload", "creation"),
    ("delete", "deletion"),
    ("set", "change"), ("update", "change"), ("rename", "change"), ("transition", "change"),
    ("finalize", "change"), ("approve", "change"), ("reject", "change"),
)


def api_type(action: str) -> str:
    """What a registry operation does, as an ECS event.type: creation, deletion, change or access."""
    words = set(action.split("-"))
    return next((ecs_type for verb, ecs_type in VERB_TYPES if verb in words), "access")


def categorization(kind: str, action: str, failed: bool) -> tuple[str, str]:
    """(event.category, event.type) of an event of this route kind and action."""
    if kind == "access":
        return "web", "error" if failed else "access"
    return "api", api_type(action)
