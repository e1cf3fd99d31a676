"""Document identity: the ``_id`` of a line, the same however often it is read (docs/events.md)."""

from __future__ import annotations

import base64
import hashlib

from pipeline.identity import Identity


def id_prefix(identity: Identity, host: str | None = None) -> str:
    """20 characters naming a file's content on one host: host name and file identity hashed
    (blake2b), base64url. ``host`` None: the prefix of documents shipped before the host was part
    of the identity (the replay check still looks for those)."""
    key = identity.key if host is None else f"{host}\0{identity.key}"
    return base64.urlsafe_b64encode(hashlib.blake2b(key.encode(), digest_size=15).digest()).decode()


def document_id(identity: Identity, offset: int, host: str | None = None) -> str:
    """The same line of the same content is always the same document.

    The hash of the file's identity, then the line's byte offset in hex. The ids of one file share
    a prefix and grow, which Lucene looks up faster than random ones (Elasticsearch's tuning
    guide): an ``op_type: create`` is an id lookup per document.
    """
    return id_prefix(identity, host) + format(offset, "x")


def keyed_id(*parts: object) -> str:
    """The id of a document that comes from no line (a probe's check): the same parts, the same
    document, so a write retried after an outage cannot duplicate it. blake2b of the parts, hex."""
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=16).hexdigest()
