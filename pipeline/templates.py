"""Index templates for the regwatch data streams, installed idempotently by ``regwatch setup``.

The mapping uses ECS's own field types (``wildcard``, ``match_only_text``, ``constant_keyword``,
``scaled_float``). They live in modules a node may lack (the integ-test zip has none of them): the
installer asks the node which it knows and maps each missing one to its nearest type, saying so in
one log line, rather than failing the setup.
"""

from __future__ import annotations

import copy
from typing import Any

import structlog
from elasticsearch import ApiError, Elasticsearch

from contract.mappings import mappings
from contract.streams import all_kinds

log = structlog.get_logger(__name__)

MAPPINGS_COMPONENT = "modelregistry@mappings"
SETTINGS_COMPONENT = "modelregistry@settings"
TEMPLATE_PRIORITY = 250  # above the stack's built-in logs-*-* / metrics-*-* (100)
DEFAULT_RETENTION = "90d"


# ECS types a node may lack (their module absent), and the nearest type every node has
DEGRADED = {"wildcard": "keyword", "match_only_text": "text", "constant_keyword": "keyword", "scaled_float": "float"}
# parameters only the ECS type takes, dropped with it
_ONLY_ON = {"scaled_float": ("scaling_factor",), "constant_keyword": ("value",)}
KEYWORD_LIMIT = 8191  # characters: at most 4 bytes each, within a keyword's 32766-byte term
_SAMPLE_PARAMS: dict[str, dict[str, Any]] = {"scaled_float": {"scaling_factor": 1000}}


def missing_types(client: Elasticsearch) -> set[str]:
    """The types of :data:`DEGRADED` the node cannot map, found by simulating a template with a
    field of each (the same privilege as installing templates; no index is made)."""
    missing = set()
    for es_type in DEGRADED:
        field = {"type": es_type, **_SAMPLE_PARAMS.get(es_type, {})}
        try:
            client.indices.simulate_template(index_patterns=["regwatch-type-probe-*"],
                                             template={"mappings": {"properties": {"probe": field}}})
        except ApiError as exc:
            if exc.status_code != 400:
                raise
            missing.add(es_type)
    return missing


def degrade(mapping: dict[str, Any], missing: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The mapping with each field of a missing type given its nearest one (:data:`DEGRADED`), and
    what changed (``{"url.path": "wildcard->keyword"}``). Pure: the input is not changed."""
    out = copy.deepcopy(mapping)
    changed: dict[str, str] = {}

    def visit(properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            path = prefix + name
            if "properties" in spec:
                visit(spec["properties"], path + ".")
                continue
            for field, field_spec in [(path, spec), *((f"{path}.{sub}", sub_spec)
                                                      for sub, sub_spec in spec.get("fields", {}).items())]:
                es_type = field_spec.get("type")
                if es_type in missing:
                    field_spec["type"] = DEGRADED[es_type]
                    for param in _ONLY_ON.get(es_type, ()):
                        field_spec.pop(param, None)
                    if es_type == "wildcard":  # a keyword holds at most 32766 bytes: longer, unindexed
                        field_spec.setdefault("ignore_above", KEYWORD_LIMIT)
                    changed[field] = f"{es_type}->{DEGRADED[es_type]}"

    visit(out["properties"], "")
    return out, changed


def node_mappings(client: Elasticsearch) -> dict[str, Any]:
    """The mapping as this node can hold it: :func:`degrade` d where a type's module is absent,
    with one log line naming what was degraded."""
    missing = missing_types(client)
    mapping, changed = degrade(mappings(), missing)
    if changed:
        log.info("field_types_degraded", missing=",".join(sorted(missing)),
                 fields=", ".join(f"{name} {what}" for name, what in changed.items()),
                 hint="this node lacks the modules of ECS's own types: each field gets its nearest type")
    return mapping


def index_template_body(kind_type: str, kind: str, retention: str | None) -> dict[str, Any]:
    template: dict[str, Any] = {}
    if retention:
        template["lifecycle"] = {"data_retention": retention}
    return {
        "index_patterns": [f"{kind_type}-modelregistry.{kind}-*"],
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "composed_of": [SETTINGS_COMPONENT, MAPPINGS_COMPONENT, f"{kind_type}-modelregistry.{kind}@custom"],
        "ignore_missing_component_templates": [f"{kind_type}-modelregistry.{kind}@custom"],
        "template": template,
        "_meta": {"managed_by": "regwatch", "description": f"regwatch {kind} events"},
    }


def lifecycle_supported(client: Elasticsearch) -> bool:
    """Data stream lifecycle in templates needs a node that knows it; probe with a simulation."""
    probe = index_template_body("logs", "lifecycle-probe", DEFAULT_RETENTION)
    probe["composed_of"], probe["ignore_missing_component_templates"] = [], []
    try:
        client.indices.simulate_template(**probe)
        return True
    except ApiError as exc:
        log.info("lifecycle_unsupported", reason=str(exc)[:200])
        return False


INGEST_PIPELINE = "regwatch-ingested"


def install_pipeline(client: Elasticsearch) -> bool:
    """The default ingest pipeline that stamps ``event.ingested`` with the node's clock.

    Nodes without the ingest-common module (the integ-test-zip) refuse it: then the shipper's
    stamp stands.
    """
    try:
        client.ingest.put_pipeline(id=INGEST_PIPELINE, description="regwatch: event.ingested from the node clock",
                                   processors=[{"set": {"field": "event.ingested",
                                                        "value": "{{{_ingest.timestamp}}}"}}])
        return True
    except ApiError as exc:
        log.info("ingest_pipeline_unsupported", reason=str(exc)[:200])
        return False


def pipeline_in_place(client: Elasticsearch) -> bool:
    """Whether the ingest pipeline exists and the settings template names it as the default."""
    try:
        client.ingest.get_pipeline(id=INGEST_PIPELINE)
        settings = client.cluster.get_component_template(name=SETTINGS_COMPONENT)
    except ApiError:
        return False
    template = settings["component_templates"][0]["component_template"]["template"]
    return template.get("settings", {}).get("index", {}).get("default_pipeline") == INGEST_PIPELINE


def data_nodes(client: Elasticsearch) -> int:
    return int(client.cluster.health(filter_path="number_of_data_nodes")["number_of_data_nodes"])


def replicas_for(nodes: int) -> int:
    """One copy more wherever there is a second node to hold it: a node lost loses nothing. More
    replicas would cost disk and indexing for a loss of two nodes at once (docs/capacity.md)."""
    return 0 if nodes <= 1 else 1


def apply_replicas(client: Elasticsearch, replicas: int) -> None:
    """The same replica count on every existing regwatch backing index (the template only
    reaches indices made after it)."""
    client.indices.put_settings(index=FAMILIES, settings={"index": {"number_of_replicas": replicas}},
                                allow_no_indices=True, ignore_unavailable=True, expand_wildcards="all")


FAMILIES = "logs-modelregistry.*,metrics-modelregistry.*"


def field_types(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{dotted name: type}`` of a mapping's fields, multi-fields included."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = prefix + name
        if "properties" in spec:
            out.update(field_types(spec["properties"], path + "."))
            continue
        out[path] = spec.get("type", "object")
        for sub, sub_spec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = sub_spec.get("type", "object")
    return out


def changed_types(have: dict[str, Any], want: dict[str, Any]) -> dict[str, str]:
    """Fields whose type an index maps otherwise than the template (``{"url.path": "keyword->wildcard"}``):
    a put-mapping cannot change them, only a new backing index can."""
    had, wanted = field_types(have.get("properties", {})), field_types(want.get("properties", {}))
    return {name: f"{had[name]}->{es_type}" for name, es_type in wanted.items()
            if name in had and had[name] != es_type}


def _streams(client: Elasticsearch) -> list[dict[str, Any]]:
    """Every regwatch data stream, with its backing indices (the write index last)."""
    resolved = client.indices.resolve_index(name=FAMILIES, expand_wildcards="all")
    return list(resolved.get("data_streams", []))


def roll_over_changed(client: Elasticsearch, mapping: dict[str, Any],
                      streams: list[dict[str, Any]] | None = None) -> dict[str, dict[str, str]]:
    """Roll over every regwatch data stream whose write index maps a field's type otherwise than
    ``mapping`` (the one just installed): its next documents go to a backing index made from the
    new template, the earlier ones stay where they are and are read with them (a data stream's name
    covers all its backing indices), so each is counted once. The streams rolled, with what changed."""
    rolled: dict[str, dict[str, str]] = {}
    for stream in _streams(client) if streams is None else streams:
        write = stream["backing_indices"][-1]
        found = client.indices.get_mapping(index=write)
        changed = changed_types(found[write]["mappings"], mapping)
        if changed:
            client.indices.rollover(alias=stream["name"])
            rolled[stream["name"]] = changed
    if rolled:
        log.info("streams_rolled_over", streams=",".join(sorted(rolled)),
                 fields=",".join(sorted({f for changed in rolled.values() for f in changed})),
                 reason="field types changed: the new mapping reaches a new backing index")
    return rolled


def apply_mappings(client: Elasticsearch, mapping: dict[str, Any] | None = None) -> bool:
    """The mapping's fields on every existing regwatch backing index too (the template only reaches
    indices made after it): a field added since (``modelregistry.failure``) is searchable at once,
    not after the next rollover. One request for all; when a backing index refuses it (it holds a
    field whose type changed since, kept until retention removes it), stream by stream and then
    index by index, so every other index still gets the new fields. False when any index refused."""
    mapping = mapping or node_mappings(client)
    options: dict[str, Any] = {"allow_no_indices": True, "ignore_unavailable": True, "expand_wildcards": "all"}
    try:
        client.indices.put_mapping(index=FAMILIES, properties=mapping["properties"], **options)
        return True
    except ApiError as exc:
        log.info("mappings_not_applied_at_once", reason=str(exc)[:300],
                 hint="an earlier backing index keeps a field type that changed: applied index by index")
    complete = True
    for stream in _streams(client):
        try:
            client.indices.put_mapping(index=stream["name"], properties=mapping["properties"], **options)
            continue
        except ApiError:
            pass
        for index in stream["backing_indices"]:
            try:
                client.indices.put_mapping(index=index, properties=mapping["properties"], **options)
            except ApiError as exc:
                complete = False
                log.info("mappings_not_applied", index=index, reason=str(exc)[:300])
    return complete


def update_streams(client: Elasticsearch) -> tuple[dict[str, dict[str, str]], bool]:
    """After :func:`install`: roll over the streams whose field types changed, then give every
    existing backing index the fields added since (:func:`apply_mappings`). The streams rolled,
    and whether every backing index took the mapping."""
    found = client.cluster.get_component_template(name=MAPPINGS_COMPONENT)
    mapping = found["component_templates"][0]["component_template"]["template"]["mappings"]
    rolled = roll_over_changed(client, mapping)
    return rolled, apply_mappings(client, mapping)


def install(client: Elasticsearch, retention: str | None = DEFAULT_RETENTION, replicas: int | None = None,
            shards: int | None = None) -> list[str]:
    """Install (or overwrite with the same content) every component and index template."""
    settings: dict[str, Any] = {"index": {"codec": "best_compression"}}
    if install_pipeline(client):
        settings["index"]["default_pipeline"] = INGEST_PIPELINE
    if replicas is not None:
        settings["index"]["number_of_replicas"] = replicas
    if shards is not None:
        settings["index"]["number_of_shards"] = shards
    client.cluster.put_component_template(
        name=SETTINGS_COMPONENT, template={"settings": settings}, meta={"managed_by": "regwatch"}
    )
    client.cluster.put_component_template(
        name=MAPPINGS_COMPONENT, template={"mappings": node_mappings(client)}, meta={"managed_by": "regwatch"}
    )
    if retention and not lifecycle_supported(client):
        retention = None
    installed = [SETTINGS_COMPONENT, MAPPINGS_COMPONENT]
    for kind_type, kind in all_kinds():
        name = f"{kind_type}-modelregistry.{kind}"
        client.indices.put_index_template(name=name, **index_template_body(kind_type, kind, retention))
        installed.append(name)
    log.info("templates_installed", count=len(installed), retention=retention)
    return installed
