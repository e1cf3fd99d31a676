"""The one Elasticsearch client factory, built from the validated configuration."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from regwatch.config import Config


def client_from_config(config: Config, *, bulk: bool = False, **overrides) -> Elasticsearch:
    """A client with the configuration's hosts, TLS and credentials (secrets read from env).

    ``bulk``: the shipper's client. Its sink retries every failed request itself (with back-off,
    forever, and knows which documents of a batch to resend), so the transport does not retry;
    orjson serializes the searches of its replay check.
    """
    options = config.elasticsearch.client_options()
    if bulk:
        options.update(serializer=OrjsonSerializer(), retry_on_timeout=True, max_retries=0)
    options.update(overrides)
    return Elasticsearch(**options)
