"""The KQL the saved objects use, parsed, checked against the mapped fields and compiled to Query DSL.

A subset of Kibana's grammar (``src/platform/packages/shared/kbn-es-query/src/kuery/grammar/
grammar.peggy``) and of its translation (``.../kuery/functions/is.ts``, ``range.ts``,
``exists.ts``, ``and.ts``, ``or.ts``, ``not.ts``): ``field : value``, ``field : "phrase"``,
``field : *``, ``field < <= > >= value``, ``and`` / ``or`` / ``not`` and parentheses. Anything
outside the subset is refused (``KqlError``), so an object cannot carry a query that was never
checked. A field must be mapped, and a value must fit the field's type: a KQL query on an
unknown field is not an error in Kibana, it silently matches nothing, which is why it is one here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from kibana.fields import Field, fields

_TOKEN = re.compile(r'\s*(?:(?P<op><=|>=|<|>|:|\(|\))|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>[^\s:()<>"]+))')
_KEYWORDS = {"and", "or", "not"}


class KqlError(ValueError):
    """A query outside the subset, on an unmapped field, or with a value the field cannot hold."""


@dataclass(frozen=True)
class _Token:
    kind: str  # op | quoted | word
    text: str


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(query):
        if not query[position:].strip():
            break
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            raise KqlError(f"cannot read {query[position:]!r}")
        kind = match.lastgroup or "word"
        text = match.group(kind)
        if kind == "quoted":
            text = re.sub(r"\\(.)", r"\1", text)
        out.append(_Token(kind, text))
        position = match.end()
    return out


class _Parser:
    def __init__(self, query: str, lookup: Callable[[str], Field | None]) -> None:
        self.tokens = _tokens(query)
        self.at = 0
        self.lookup = lookup

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise KqlError("the query ends too early")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token.kind == "word" and token.text.lower() == word:
            self.at += 1
            return True
        return False

    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            return {"match_all": {}}
        query = self.or_expr()
        if self.peek() is not None:
            raise KqlError(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return query

    def or_expr(self) -> dict[str, Any]:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}

    def and_expr(self) -> dict[str, Any]:
        parts = [self.not_expr()]
        while self.keyword("and"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def not_expr(self) -> dict[str, Any]:
        if self.keyword("not"):
            return {"bool": {"must_not": [self.not_expr()]}}
        token = self.peek()
        if token and token.kind == "op" and token.text == "(":
            self.take()
            inner = self.or_expr()
            closing = self.take()
            if closing.text != ")":
                raise KqlError(f"expected ')' but found {closing.text!r}")
            return inner
        return self.comparison()

    def comparison(self) -> dict[str, Any]:
        name = self.take()
        if name.kind != "word" or name.text.lower() in _KEYWORDS:
            raise KqlError(f"expected a field name, found {name.text!r}")
        field = self.lookup(name.text)
        if field is None:
            raise KqlError(f"field {name.text!r} is not mapped")
        op = self.take()
        if op.kind != "op" or op.text not in (":", "<", "<=", ">", ">="):
            raise KqlError(f"expected ':' or a comparison after {name.text!r}, found {op.text!r}")
        value = self.take()
        if value.kind == "op":
            raise KqlError(f"expected a value after {name.text} {op.text}, found {value.text!r}")
        if op.text == ":":
            if value.kind == "word" and value.text == "*":
                return {"exists": {"field": field.name}}
            if value.kind == "word" and "*" in value.text:
                raise KqlError(f"wildcard {value.text!r} is outside the checked subset")
            typed = _typed(field, value.text)
            kind = "match_phrase" if value.kind == "quoted" else "match"
            return {kind: {field.name: typed}}
        if field.kibana_type not in ("number", "date"):
            raise KqlError(f"range on {field.name}, a {field.kibana_type} field")
        bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op.text]
        return {"range": {field.name: {bound: _typed(field, value.text)}}}


def _typed(field: Field, text: str) -> Any:
    kind = field.kibana_type
    if kind == "number":
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise KqlError(f"{field.name} is a number; {text!r} is not") from None
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise KqlError(f"{field.name} is a boolean; {text!r} is not")
        return text.lower() == "true"
    if kind == "unknown":
        raise KqlError(f"{field.name} ({field.es_type}) cannot be queried")
    return text


def compile_kql(query: str, known: dict[str, Field] | None = None) -> dict[str, Any]:
    """Query DSL for a KQL string; KqlError when it is outside the subset or does not fit the fields."""
    table = fields() if known is None else known
    return _Parser(query, table.get).parse()


def fields_named(query: str) -> set[str]:
    """The field names a KQL string mentions, mapped or not (it must parse)."""
    named: set[str] = set()

    def lookup(name: str) -> Field | None:
        named.add(name)
        return fields().get(name) or Field(name, "keyword", True)

    _Parser(query, lookup).parse()
    return named
