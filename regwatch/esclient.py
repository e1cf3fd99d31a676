"""The Elasticsearch client, built from the validated configuration."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from regwatch.config import Config


def client_from_config(config: Config, **overrides) -> Elasticsearch:
    options = config.elasticsearch.client_options()
    options.update(overrides)
    return Elasticsearch(**options)
