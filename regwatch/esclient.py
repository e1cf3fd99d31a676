"""The one Elasticsearch client factory, built from the validated configuration."""

from __future__ import annotations

import structlog
from elastic_transport import SniffingError, TransportError
from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from contract.secrets import redact_userinfo
from regwatch.config import Config

log = structlog.get_logger(__name__)


def client_from_config(config: Config, *, bulk: bool = False, **overrides) -> Elasticsearch:
    """A client with the configuration's hosts, TLS and credentials (secrets read from env).

    ``bulk``: the shipper's client. Its sink retries every failed request itself (with back-off,
    forever, and knows which documents of a batch to resend), so the transport does not retry;
    orjson serializes the searches of its replay check.

    With ``sniff`` the client learns the cluster's nodes when it is built. A daemon started while
    the nodes it names are down or busy must not die of it (its sink, runner or probe waits for
    the cluster as after any outage), so a failed first look is logged and the client looks again
    before its requests instead (one small request at most every 10 s), learning the nodes as soon
    as one it names answers.
    """
    options = config.elasticsearch.client_options()
    if bulk:
        options.update(serializer=OrjsonSerializer(), retry_on_timeout=True, max_retries=0)
    options.update(overrides)
    if not options.get("sniff_on_start"):
        return Elasticsearch(**options)
    try:
        return Elasticsearch(**options)
    except (SniffingError, TransportError) as error:
        log.warning("elasticsearch_nodes_not_learned_at_start", then="looking again before requests",
                    hosts=[redact_userinfo(host) for host in config.elasticsearch.hosts],
                    reason=type(error).__name__)
        return Elasticsearch(**{**options, "sniff_on_start": False, "sniff_before_requests": True})
