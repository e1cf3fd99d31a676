"""The saved objects regwatch ships: data views, Lens visualizations, dashboards, saved searches.

What they show is said in ``kibana.specs``; ``kibana.lens`` and ``kibana.dashboard`` build the
objects from it, each in the envelope of ``kibana.saved_object``. ``python -m kibana.objects``
writes ``kibana/regwatch.ndjson``; a test checks the committed file equals this output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contract.views import DATA_VIEWS
from kibana.dashboard import dashboard_object
from kibana.lens import lens_object
from kibana.saved_object import saved_object
from kibana.specs import DASHBOARDS, SEARCHES, Vis

NDJSON = Path(__file__).with_name("regwatch.ndjson")


def data_view_objects() -> list[dict[str, Any]]:
    return [saved_object("index-pattern", view_id, {"title": pattern, "name": name, "timeFieldName": "@timestamp"}, [])
            for view_id, (name, pattern) in DATA_VIEWS.items()]


def search_objects() -> list[dict[str, Any]]:
    objects = []
    for search_id, title, view, columns, query in SEARCHES:
        source = {"query": {"query": query, "language": "kuery"}, "filter": [],
                  "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
        objects.append(saved_object("search", search_id, {
            "title": title, "description": "", "columns": columns, "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)}},
            [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": view}]))
    return objects


def all_visualizations() -> list[Vis]:
    return [vis for _, _, visuals, _, _ in DASHBOARDS for vis in visuals]


def all_objects() -> list[dict[str, Any]]:
    objects = data_view_objects() + search_objects() + [lens_object(v) for v in all_visualizations()]
    objects += [dashboard_object(*d) for d in DASHBOARDS]
    return objects


def render() -> str:
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in all_objects())


if __name__ == "__main__":
    NDJSON.write_text(render())
    print(f"wrote {NDJSON} ({len(all_objects())} objects)")
