"""The fields a data view sees, with the type Kibana gives each one.

Every regwatch data stream shares one mapping (``contract/mappings.yaml``), so one
table serves every data view. Kibana does not use Elasticsearch's type names: a data view field
of type ``keyword`` is a ``string``, ``long`` a ``number`` (the table in ``@kbn/field-types``,
``src/platform/packages/shared/kbn-field-types/src/kbn_field_types_factory.ts``). Lens writes that
Kibana type into a column's ``dataType``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from contract.mappings import mappings

# Elasticsearch type -> Kibana field type (kbn_field_types_factory.ts), the types our mapping uses.
KIBANA_TYPES = {
    "keyword": "string", "text": "string", "match_only_text": "string", "wildcard": "string",
    "constant_keyword": "string", "long": "number", "integer": "number", "short": "number", "byte": "number",
    "double": "number", "float": "number", "half_float": "number", "scaled_float": "number",
    "unsigned_long": "number", "date": "date", "date_nanos": "date", "ip": "ip", "boolean": "boolean",
}


# Types Kibana cannot aggregate on (a wildcard field can: it keeps doc values)
UNAGGREGATABLE = frozenset({"text", "match_only_text"})


@dataclass(frozen=True)
class Field:
    name: str
    es_type: str
    aggregatable: bool

    @property
    def kibana_type(self) -> str:
        return KIBANA_TYPES.get(self.es_type, "unknown")


def flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, Field]:
    """The fields of a mapping's ``properties``, by dotted name, multi-fields included."""
    out: dict[str, Field] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(flatten(spec["properties"], path + "."))
            continue
        es_type = spec.get("type", "object")
        aggregatable = es_type not in UNAGGREGATABLE and spec.get("doc_values", True) is not False
        out[path] = Field(path, es_type, aggregatable)
        for sub, sub_spec in spec.get("fields", {}).items():
            sub_type = sub_spec["type"]
            out[f"{path}.{sub}"] = Field(f"{path}.{sub}", sub_type, sub_type not in UNAGGREGATABLE)
    return out


@cache
def fields() -> dict[str, Field]:
    """Every mapped field of the regwatch streams, by dotted name."""
    return flatten(mappings()["properties"])


def kibana_type(name: str) -> str:
    """The Kibana type of a mapped field; KeyError names a field the streams do not map."""
    return fields()[name].kibana_type
