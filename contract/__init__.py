"""The ground floor: what every room agrees on, standing on nothing of ours.

The event contract (docs/events.md): kinds and stream names (``streams``), the mapping and the
type of every field (``mappings``, ``fields``), the one timestamp shape (``timestamps``), the data
views that name the streams to people (``views``); the rule language, KQL (``kql``); and the rules
every file and request is read by (``validation``, ``yamlfile``, ``secrets``). The parsers write
this contract, the shipper carries it, the rules and the dashboards read it: side by side, none of
them beneath another.
"""
