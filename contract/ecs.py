"""The Elastic Common Schema version regwatch's documents follow (``ecs.version``).

ECS asks every document to say the version of the schema it was written to, so a reader (Kibana's
apps, a user's query) knows which field names and types to expect. Every room writes the same one
(``tests/test_ecs.py`` checks the mapping and the documents against this version's definitions).
"""

from __future__ import annotations

from typing import Any

ECS_VERSION = "9.4.0"
# The ``ecs`` object of a document: one shared object (documents are only serialised, never changed).
ECS: dict[str, Any] = {"version": ECS_VERSION}
