"""The envelope of every saved object regwatch ships: its content, references and version fields.

Each object carries the version fields a Kibana 8.9+ export would give it (``VERSIONS``), so an
import runs none of the legacy migrations of its type, and ``managed: false``.
"""

from __future__ import annotations

from typing import Any

# What a Kibana 8.9+ export writes on objects of each type. On import, Kibana runs every legacy
# migration of the type newer than ``typeMigrationVersion`` (all of them when the field is
# missing: collect_saved_objects.ts sets it to ''), and the core transforms newer than
# ``coreMigrationVersion`` (document_migrator/pipelines/upgrade_pipeline.ts). The values are the
# newest legacy migration of each type, read in Kibana's source:
#   index-pattern  8.0.0  migrations to 7.11.0 (data_views/server/saved_objects/index_pattern_migrations.ts),
#                         then the multi-namespace conversion at 8.0.0 (data_views.ts)
#   search         8.0.0  migrations to 7.9.3 (saved_search/server/saved_objects/search_migrations.ts;
#                         the search-source and filter maps are empty), conversion at 8.0.0 (search.ts)
#   lens           8.9.0  lensMigrations to 8.9.0 (lens/server/migrations/saved_object_migrations.ts)
#   dashboard      8.9.0  dashboard migrations to 7.17.3 merged with the embeddables' (Lens to 8.9.0)
#                         (dashboard/server/dashboard_saved_object/migrations/dashboard_saved_object_migrations.ts)
#   core           8.8.0  the one core transform (document_migrator/migrations/index.ts)
# Model versions (10.x.y) that a newer Kibana defines still apply, as they do to its own exports.
CORE_MIGRATION_VERSION = "8.8.0"
VERSIONS = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}


def saved_object(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, Any]]) -> dict[str, Any]:
    """One saved object as Kibana exports it: content, references and the version fields."""
    return {"id": id_, "type": type_, "attributes": attributes, "references": references,
            "coreMigrationVersion": CORE_MIGRATION_VERSION, "typeMigrationVersion": VERSIONS[type_],
            "managed": False}
