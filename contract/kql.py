"""KQL, the query language of Kibana's query bar, parsed and compiled to Query DSL.

The grammar follows Kibana's (``src/platform/packages/shared/kbn-es-query/grammar/grammar.peggy``;
the same as elastic/detection-rules ``kql/kql.g``): ``or`` binds looser than ``and``, ``not``
binds tightest, parentheses group, ``field:(a or b)`` lists values, ``field:{...}`` is a nested
query, ``field > 5`` a range. The translation follows Kibana's
``kbn-es-query/src/kuery/functions/{is,and,or,not,range,exists,nested}.ts``:

* ``field:value`` is a ``match``, ``field:"a phrase"`` a ``match_phrase``, ``field:*`` an
  ``exists``, ``field:va*e`` a ``query_string`` wildcard on that field;
* a value without a field is a lenient ``multi_match`` (``phrase`` when quoted);
* ``and`` is a ``bool`` ``filter``, ``or`` a ``bool`` ``should`` with one required, ``not`` a
  ``bool`` ``must_not``.

Two users, one parser. A rule's ``kql:`` (:func:`to_dsl`) runs over any index, whose fields are not
known here, so field names are taken as written (Kibana would expand ``field*`` names from the data
view). The shipped saved objects (:func:`compile_kql`) are held to a checked subset: every field
mapped, every value of the field's type, no wildcards, free text, value lists or nested queries. A
KQL query on an unknown field is not an error in Kibana, it silently matches nothing, which is why
it is one here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contract.fields import Field, fields

# (construct, field, text) -> the value to query with; raises KqlError to refuse. Constructs:
# match, phrase, exists, wildcard, range, free, nested, list.
Check = Callable[[str, str, str], Any]


def _as_written(construct: str, field: str, text: str) -> Any:
    return text

_SPECIAL = set('\\():<>"*{}')
_KEYWORDS = {"or", "and", "not"}
_QS_SPECIAL = re.compile(r'([+\-=&|><!(){}\[\]^"~?:\\/ ])')


class KqlError(ValueError):
    """Text that is not KQL (the message names the position), or outside what the caller accepts."""


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) { } : range word quoted or and not
    text: str
    at: int
    wildcard: bool = False


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "(){}:":
            out.append(_Token(char, char, i))
            i += 1
        elif char in "<>":
            op = text[i:i + 2] if text[i + 1:i + 2] == "=" else char
            out.append(_Token("range", op, i))
            i += len(op)
        elif char == '"':
            start, i, chars = i, i + 1, []
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                    chars.append({"t": "\t", "n": "\n", "r": "\r"}.get(text[i], text[i]))
                elif text[i] in "\r\n":
                    raise KqlError(f"line break inside the quoted string at {start}")
                else:
                    chars.append(text[i])
                i += 1
            if i >= len(text):
                raise KqlError(f"unterminated quoted string at {start}")
            out.append(_Token("quoted", "".join(chars), start))
            i += 1
        else:
            start, chars, wildcard = i, [], False
            while i < len(text) and not text[i].isspace() and (text[i] not in _SPECIAL or text[i] in "\\*"):
                if text[i] == "\\":
                    if i + 1 >= len(text):
                        raise KqlError(f"a lone backslash at {i}")
                    i += 1
                    chars.append({"t": "\t", "n": "\n", "r": "\r"}.get(
                        text[i], "\\" + text[i] if text[i] == "*" else text[i]))
                elif text[i] == "*":
                    wildcard = True
                    chars.append("*")
                else:
                    chars.append(text[i])
                i += 1
            word = "".join(chars)
            kind = word.lower() if word.lower() in _KEYWORDS and text[start] != "\\" else "word"
            out.append(_Token(kind, word, start, wildcard))
    return out


class _Parser:
    def __init__(self, text: str, check: Check = _as_written) -> None:
        self.check = check
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > 40:
            raise KqlError("nested more than 40 levels deep")

    def peek(self, *kinds: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos].kind in kinds

    def take(self, kind: str) -> _Token:
        if not self.peek(kind):
            where = self.tokens[self.pos].at if self.pos < len(self.tokens) else "the end"
            found = repr(self.tokens[self.pos].text) if self.pos < len(self.tokens) else "nothing"
            raise KqlError(f"expected {kind!r} at {where}, found {found}")
        self.pos += 1
        return self.tokens[self.pos - 1]

    # query := or
    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            return {"match_all": {}}
        query = self.or_query("")
        if self.pos < len(self.tokens):
            raise KqlError(f"unexpected {self.tokens[self.pos].text!r} at {self.tokens[self.pos].at}")
        return query

    def or_query(self, path: str) -> dict[str, Any]:
        parts = [self.and_query(path)]
        while self.peek("or"):
            self.pos += 1
            parts.append(self.and_query(path))
        return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}

    def and_query(self, path: str) -> dict[str, Any]:
        parts = [self.not_query(path)]
        while self.peek("and"):
            self.pos += 1
            parts.append(self.not_query(path))
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def not_query(self, path: str) -> dict[str, Any]:
        if self.peek("not"):
            self.pos += 1
            return {"bool": {"must_not": [self.sub_query(path)]}}
        return self.sub_query(path)

    def sub_query(self, path: str) -> dict[str, Any]:
        if self.peek("("):
            self.pos += 1
            self.deeper()
            query = self.or_query(path)
            self.take(")")
            return query
        return self.expression(path)

    def expression(self, path: str) -> dict[str, Any]:
        value = self.value()
        if self.peek("range"):
            op = self.take("range").text
            bound = self.value()
            name = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
            return {"range": {path + value.text: {name: self.check("range", path + value.text, bound.text)}}}
        if not self.peek(":"):
            return _free(value, self.check)
        self.pos += 1
        field = path + value.text
        if self.peek("{"):
            self.pos += 1
            self.deeper()
            self.check("nested", field, "")
            inner = self.or_query(field + ".")
            self.take("}")
            return {"nested": {"path": field, "query": inner, "score_mode": "none"}}
        return self.values(field)

    def values(self, field: str) -> dict[str, Any]:
        """``field:value`` or ``field:(a or b and not c)``."""
        def one() -> dict[str, Any]:
            self.deeper()
            if self.peek("not"):
                self.pos += 1
                return {"bool": {"must_not": [one()]}}
            if self.peek("("):
                self.pos += 1
                self.check("list", field, "")
                inner = either()
                self.take(")")
                return inner
            return _is(field, self.value(), self.check)

        def both() -> dict[str, Any]:
            parts = [one()]
            while self.peek("and"):
                self.pos += 1
                parts.append(one())
            return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

        def either() -> dict[str, Any]:
            parts = [both()]
            while self.peek("or"):
                self.pos += 1
                parts.append(both())
            return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}

        return one()

    def value(self) -> _Token:
        """A quoted string, or unquoted words up to the next keyword or special character (Kibana
        reads ``message:hello world`` as one value)."""
        if self.peek("quoted"):
            return self.take("quoted")
        first = self.take("word")
        words, wildcard = [first.text], first.wildcard
        while self.peek("word") and not self._followed_by_field():
            token = self.take("word")
            words.append(token.text)
            wildcard = wildcard or token.wildcard
        return _Token("word", " ".join(words), first.at, wildcard)

    def _followed_by_field(self) -> bool:
        nxt = self.pos + 1
        return nxt < len(self.tokens) and self.tokens[nxt].kind in (":", "range")


def _is(field: str, value: _Token, check: Check) -> dict[str, Any]:
    if value.kind == "quoted":
        return {"match_phrase": {field: check("phrase", field, value.text)}}
    if value.text == "*":
        check("exists", field, "*")
        return {"exists": {"field": field}}
    if value.wildcard:
        return {"query_string": {"fields": [field], "query": _wildcard(check("wildcard", field, value.text))}}
    return {"match": {field: check("match", field, value.text.replace("\\*", "*"))}}


def _free(value: _Token, check: Check) -> dict[str, Any]:
    text = check("free", "", value.text)
    if value.kind == "quoted":
        return {"multi_match": {"type": "phrase", "query": text, "lenient": True}}
    if value.wildcard:
        return {"query_string": {"query": _wildcard(text)}}
    return {"multi_match": {"type": "best_fields", "query": text.replace("\\*", "*"), "lenient": True}}


def _wildcard(text: str) -> str:
    """A query_string term where only unescaped ``*`` is a wildcard."""
    parts = re.split(r"(\\\*|\*)", text)
    return "".join("*" if p == "*" else "\\*" if p == "\\*" else _QS_SPECIAL.sub(r"\\\1", p) for p in parts)


def to_dsl(text: str, check: Check = _as_written) -> dict[str, Any]:
    """The Query DSL of a KQL query, or :class:`KqlError` saying where it is not KQL."""
    if len(text) > 10_000:
        raise KqlError("longer than 10,000 characters")
    return _Parser(text, check).parse()


# -- the checked subset of the shipped saved objects -------------------------------------------


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


def _mapped(lookup: Callable[[str], Field | None]) -> Check:
    def check(construct: str, name: str, text: str) -> Any:
        if construct in ("wildcard", "free", "nested", "list"):
            raise KqlError(f"{construct} {name or text!r} is outside the checked subset")
        field = lookup(name)
        if field is None:
            raise KqlError(f"field {name!r} is not mapped")
        if construct == "exists":
            return text
        if construct == "range" and field.kibana_type not in ("number", "date"):
            raise KqlError(f"range on {field.name}, a {field.kibana_type} field")
        return _typed(field, text)
    return check


def compile_kql(query: str, known: dict[str, Field] | None = None) -> dict[str, Any]:
    """Query DSL for a KQL string; KqlError when it is outside the subset or does not fit the fields."""
    table = fields() if known is None else known
    return to_dsl(query, _mapped(table.get))


def fields_named(query: str) -> set[str]:
    """The field names a KQL string mentions, mapped or not (it must parse)."""
    named: set[str] = set()

    def lookup(name: str) -> Field | None:
        named.add(name)
        return fields().get(name) or Field(name, "keyword", True)

    to_dsl(query, _mapped(lookup))
    return named
