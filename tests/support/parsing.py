"""Small helpers shared by tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from parsers import LineParser, ParseContext
from parsers.events import kind_of, validate_document

SAMPLES = Path(__file__).parent.parent / "samples"


def parse_lines(fmt: str, lines: list[bytes], **ctx: Any) -> list[dict[str, Any]]:
    parser = LineParser(ParseContext(format=fmt, **ctx))
    docs = [parser.parse(line, read_at="2026-11-25T00:00:00.000Z") for line in lines]
    for doc in docs:
        validate_document(doc)  # every document meets the event contract
    return docs


def parse_file(fmt: str, path: Path, **ctx: Any) -> list[dict[str, Any]]:
    return parse_lines(fmt, path.read_bytes().splitlines(keepends=True), **ctx)


def kinds(docs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(kind_of(d) for d in docs)
