"""The test helpers themselves: a poll of Elasticsearch survives what a loaded node answers."""

from __future__ import annotations

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, NotFoundError

from support.shipping import indexed


def _error(cls: type[ApiError], status: int, kind: str) -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "127.0.0.1", 9200))
    return cls(kind, meta, {"error": {"type": kind}, "status": status})


class _Indices:
    def refresh(self, **_kwargs) -> None:
        return None


class _Node:
    """Answers ``count`` with the errors given, in turn, then with 7 documents."""

    def __init__(self, errors: list[ApiError]) -> None:
        self.errors = errors
        self.indices = _Indices()
        self.calls = 0

    def count(self, **_kwargs) -> dict[str, int]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"count": 7}


def test_indexed_asks_again_after_a_shard_not_yet_started() -> None:
    """After a rollover, the new backing index's shard may not be started: a 503
    ``search_phase_execution_exception`` that the next request does not get (it failed a
    kill -9 test on a loaded machine)."""
    node = _Node([_error(ApiError, 503, "search_phase_execution_exception")] * 2)
    assert indexed(node, "ns") == 7  # type: ignore[arg-type]
    assert node.calls == 3


def test_indexed_does_not_hide_a_real_error() -> None:
    node = _Node([_error(NotFoundError, 404, "index_not_found_exception")])
    with pytest.raises(NotFoundError):
        indexed(node, "ns")  # type: ignore[arg-type]
    assert node.calls == 1
