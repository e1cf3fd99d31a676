"""Extract the facts regwatch's ECS check needs from ECS's ``generated/ecs/ecs_flat.yml``.

    python tests/support/ecs/extract.py ecs_flat.yml 9.4.0 > tests/support/ecs/fields-9.4.0.yaml

Kept per field: its type, ``ignore_above``, multi-fields (name and type), allowed values and, for
``event.category``'s values, the event types ECS expects with each. Nothing else (descriptions,
examples) is copied. ECS is Apache-2.0 licensed (LICENSE.txt beside this file).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml


def facts(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(flat):
        field = flat[name]
        fact: dict[str, Any] = {"type": field["type"]}
        if field.get("ignore_above"):
            fact["ignore_above"] = field["ignore_above"]
        if field.get("multi_fields"):
            fact["multi_fields"] = {m["name"]: m["type"] for m in field["multi_fields"]}
        if field.get("allowed_values"):
            fact["allowed"] = {v["name"]: sorted(v.get("expected_event_types") or []) for v in field["allowed_values"]}
        out[name] = fact
    return out


def main(path: str, version: str) -> None:
    with open(path, encoding="utf-8") as source:
        flat = yaml.safe_load(source)
    sys.stdout.write(f"# ECS {version} field facts, extracted from elastic/ecs generated/ecs/ecs_flat.yml at tag "
                     f"v{version} by extract.py (Apache-2.0, LICENSE.txt)\n")
    yaml.safe_dump({"version": version, "fields": facts(flat)}, sys.stdout, sort_keys=False, width=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
