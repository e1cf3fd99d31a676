"""Log formats: every line of a model registry's access or audit log becomes one typed event.

This room knows formats and nothing about Elasticsearch connections. ``LineParser.parse`` takes
the raw bytes of one line and always returns exactly one document: an event of a kind, or a
dead-letter with the raw line and the reason. It never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog

from contract.timestamps import now_iso
from parsers.audit_documents import AuditDocuments
from parsers.encoded_access import EncodedAccessLines
from parsers.errors import ParseError
from parsers.events import ParseContext, deadletter_document, event_document, kind_of
from parsers.formats.access import Parsed, parse_combined, parse_uvicorn
from parsers.formats.audit import parse_canonical, parse_cloudtrail, parse_databricks
from parsers.formats.json_access import parse_nginx_json
from parsers.http_documents import HttpDocuments
from parsers.routes import Router, router_for

log = structlog.get_logger(__name__)

__all__ = ["FORMATS", "LineParser", "ParseContext", "ParseError", "kind_of"]

# A format's function: the fields of a line, or (given the input's HttpDocuments or AuditDocuments)
# the line's finished document
FormatFn = Callable[..., Parsed | dict[str, Any]]

# format name -> (parse function, built-in route table)
FORMATS: dict[str, tuple[FormatFn, str]] = {
    "nginx": (parse_combined, "mlflow"),
    "gunicorn": (parse_combined, "mlflow"),
    "uvicorn": (parse_uvicorn, "mlflow"),
    "nginx-json": (parse_nginx_json, "mlflow"),
    "audit": (parse_canonical, "mlflow"),
    "databricks-audit": (parse_databricks, "databricks"),
    "cloudtrail": (parse_cloudtrail, "sagemaker"),
}

HTTP_FORMATS = frozenset({"nginx", "gunicorn", "uvicorn", "nginx-json"})
COMBINED_FORMATS = frozenset({"nginx", "gunicorn"})

# Dead-letters keep the raw line, but not a 1 GiB one: this much of it, and its length.
DEADLETTER_RAW_LIMIT = 32 * 1024


class LineParser:
    """Parses the lines of one input: one format, one route table, one context."""

    def __init__(self, ctx: ParseContext, router: Router | None = None) -> None:
        if ctx.format not in FORMATS:
            raise ValueError(f"unknown format {ctx.format!r}; one of {', '.join(FORMATS)}")
        self.ctx = ctx
        self._parse, default_table = FORMATS[ctx.format]
        self.router = router or router_for(None, default_table)
        self.platform = ctx.platform or self.router.platform
        # HTTP access lines of the usual shape and audit records: documents built in one step
        # (parsers.http_documents, parsers.audit_documents)
        self.docs: HttpDocuments | AuditDocuments | None = (
            HttpDocuments(ctx, self.platform, self.router) if ctx.format in HTTP_FORMATS
            else AuditDocuments(ctx, self.platform, self.router))
        # nginx and gunicorn lines encoded without their dicts, for encode_block (parsers.encoded_access)
        self._encoded: EncodedAccessLines | None = (
            EncodedAccessLines(self, self.docs) if ctx.format in COMBINED_FORMATS and not ctx.keep_original
            and isinstance(self.docs, HttpDocuments) else None)

    @property
    def encoded(self) -> EncodedAccessLines | None:
        """Its nginx and gunicorn lines' documents written from encoded parts (None: another
        format, or ``keep_original``): what the shipper and ``encode_block`` use."""
        return self._encoded

    def parse(self, raw: bytes, read_at: str | None = None) -> dict[str, Any]:
        """One line (with or without its newline) to one document. Never raises."""
        ctx = self.ctx
        if len(raw) > ctx.max_line_bytes:
            return self._dead(raw, f"line too long: {len(raw)} bytes > {ctx.max_line_bytes}", "line_too_long", read_at)
        line = raw.rstrip(b"\r\n")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._dead(line, f"invalid UTF-8 at byte {exc.start}", "invalid_utf8", read_at)
        if not text or text.isspace():
            return self._dead(line, "empty line", "empty_line", read_at)
        try:
            parsed: Any = self._parse(text, self.router, ctx, self.docs)
            if parsed.__class__ is dict:  # the finished document
                return parsed
            route, failed, fields = parsed
            if "ts" not in fields:
                fields["ts"] = read_at or now_iso()
            platform = fields.pop("platform", None) or self.platform
            return event_document(ctx, route, failed, fields, platform, text)
        except ParseError as exc:
            return self._dead(line, exc.reason, exc.error_type, read_at)
        except Exception as exc:  # a parser bug must not stop the daemon
            log.error("parser_bug", format=ctx.format, error=repr(exc))
            return self._dead(line, f"parser error: {exc!r}"[:500], "parser_bug", read_at)

    def parse_encoded(self, raw: bytes, read_at: str | None = None) -> tuple[dict[str, Any], bytes]:
        """``parse``, then the document as one JSON line; a document that cannot be encoded (a
        parser letting a bad value through) becomes a dead-letter rather than an exception."""
        doc = self.parse(raw, read_at)
        try:
            return doc, orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
        except (orjson.JSONEncodeError, TypeError) as exc:
            log.error("unencodable_document", format=self.ctx.format, error=str(exc))
            doc = self.dead_letter(raw, f"document not encodable: {exc}"[:500], "unencodable")
            return doc, orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)

    def encode_block(self, lines: list[bytes], counts: dict[str, int],
                     check: Callable[[dict[str, Any]], Any] | None = None) -> bytes:
        """The JSON lines of ``parse_encoded`` for a block of lines, joined, each document's
        dataset counted in ``counts`` (``regwatch parse``: one call per block, not per line).
        nginx and gunicorn lines of the usual shape are encoded without their documents
        (``parsers.encoded_access``), every other line through ``parse_encoded``; with ``check``
        (``--validate``) every line is, and ``check`` is given each document."""
        encoded_line = self._encoded.line if self._encoded is not None and check is None else None
        parse_encoded = self.parse_encoded
        max_line = self.ctx.max_line_bytes
        block: list[bytes] = []
        append = block.append
        for raw in lines:
            if encoded_line is not None and len(raw) <= max_line:
                try:
                    done = encoded_line(raw.rstrip(b"\r\n").decode("utf-8"))
                except Exception:  # a bad value: parse_encoded gives its dead-letter
                    done = None
                if done is not None:
                    encoded, dataset = done
                    try:
                        counts[dataset] += 1
                    except KeyError:
                        counts[dataset] = 1
                    append(encoded)
                    continue
            doc, encoded = parse_encoded(raw)
            if check is not None:
                check(doc)
            dataset = doc["data_stream"]["dataset"]
            try:
                counts[dataset] += 1
            except KeyError:
                counts[dataset] = 1
            append(encoded)
        return b"".join(block)

    def dead_letter(self, raw: bytes, reason: str, error_type: str) -> dict[str, Any]:
        """A dead-letter for a line judged bad outside the parser (too long, refused by the sink)."""
        return self._dead(raw.rstrip(b"\r\n"), reason, error_type, None)

    def _dead(self, raw: bytes, reason: str, error_type: str, read_at: str | None) -> dict[str, Any]:
        kept = raw[:DEADLETTER_RAW_LIMIT].decode("utf-8", errors="backslashreplace")
        if len(raw) > DEADLETTER_RAW_LIMIT:
            kept += f"... [{len(raw) - DEADLETTER_RAW_LIMIT} more bytes]"
        ctx = self.ctx
        return deadletter_document(ctx, kept, reason, error_type, read_at or now_iso(), self.platform)
