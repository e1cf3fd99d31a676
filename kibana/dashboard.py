"""A dashboard as Kibana saves it: a help panel, then the Lens panels two by two, and optional
controls (an options list each: the model, or an anomaly rule and its group)."""

from __future__ import annotations

import json
from typing import Any

from kibana.saved_object import saved_object
from kibana.specs import Control, Vis


def _markdown_panel(text: str, index: int, y: int) -> dict[str, Any]:
    return {"type": "visualization", "panelIndex": f"p{index}", "gridData": {"x": 0, "y": y, "w": 48, "h": 8,
                                                                             "i": f"p{index}"},
            "embeddableConfig": {"savedVis": {"title": "", "description": "", "type": "markdown",
                                              "params": {"fontSize": 12, "openLinksInNewTab": False, "markdown": text},
                                              "uiState": {}, "data": {"aggs": [], "searchSource": {}}},
                                 "hidePanelTitles": True, "enhancements": {}}}


def dashboard_object(dashboard_id: str, title: str, visuals: list[Vis], help_text: str,
                     controls: tuple[Control, ...]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = [_markdown_panel(help_text, 0, 0)]
    references: list[dict[str, Any]] = []
    y = 8
    for n, vis in enumerate(visuals, 1):
        x = 0 if n % 2 else 24
        panels.append({"type": "lens", "panelIndex": f"p{n}", "panelRefName": f"panel_p{n}",
                       "gridData": {"x": x, "y": y, "w": 24, "h": 12, "i": f"p{n}"}, "embeddableConfig": {}})
        # the name Kibana's own extract writes: "<panelIndex>:panel_<panelIndex>"
        # (dashboard_saved_object/migrations/migrate_extract_panel_references/dashboard_container_references.ts)
        references.append({"name": f"p{n}:panel_p{n}", "type": "lens", "id": vis.id})
        if x == 24:
            y += 12
    attributes: dict[str, Any] = {
        "title": title, "description": help_text.splitlines()[0].strip("* "),
        "panelsJSON": json.dumps(panels, sort_keys=True),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": True, "hidePanelTitles": False}),
        "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
    }
    if controls:
        # chained (HIERARCHICAL): a group control lists the groups of the rule picked before it
        panels_of = {c.id: {"order": order, "width": "large", "grow": True, "type": "optionsListControl",
                            "explicitInput": {"id": c.id, "fieldName": c.field, "title": c.title,
                                              "singleSelect": True}}
                     for order, c in enumerate(controls)}
        attributes["controlGroupInput"] = {"controlStyle": "oneLine", "chainingSystem": "HIERARCHICAL",
                                           "ignoreParentSettingsJSON": json.dumps({"ignoreFilters": False}),
                                           "panelsJSON": json.dumps(panels_of)}
        references += [{"name": f"controlGroup_{c.id}:optionsListDataView", "type": "index-pattern", "id": c.view}
                       for c in controls]
    return saved_object("dashboard", dashboard_id, attributes, references)

