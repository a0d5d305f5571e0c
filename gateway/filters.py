"""The filter language (contract §3, a Searchlight subset): parse, check, evaluate.

    filter     := terms
    terms      := term (AND term)* | term (OR term)*      mixing AND and OR needs parentheses
    term       := '(' terms ')' | field [NOT] predicate
    predicate  := (= EQ != <> NE > GT >= GE < LT <= LE CONTAINS STARTSWITH ENDSWITH) value
                | IN '(' value (',' value)* ')' | BETWEEN value AND value | IS [NOT] NULL
    value      := word | 'quoted' ('' is a quote) | number | true | false | ISO date
                | datetime'...' | guid'...'              (these two with azure_literals=True)

Keywords and field names are case-insensitive; the AST holds field names in lowercase. Query
filters are checked against the listing's field types (`typed_values`) and compiled to
parameterized SQL by the stores (`gateway.store.filter_sql`); rule filters are evaluated in
Python (`evaluate`). What a literal means for a field type is in `gateway.filter_values`.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

from gateway.errors import FilterError
from gateway.filter_values import (
    LIKE_OPS,
    FieldType,
    Literal,
    as_bool,
    as_datetime,
    as_number,
    as_uuid,
    field_value,
    parse_datetime,
    unknown_field,
)

__all__ = [
    "MAX_DEPTH", "MAX_FILTER_LENGTH", "And", "Comparison", "FieldType", "Literal", "Node", "Or",
    "evaluate", "fields_of", "parse_filter", "typed_values",
]  # fmt: skip

MAX_FILTER_LENGTH = 2000
MAX_DEPTH = 10

_OPERATORS = {
    "=": "eq", "eq": "eq", "!=": "ne", "<>": "ne", "ne": "ne", ">": "gt", "gt": "gt",
    ">=": "ge", "ge": "ge", "<": "lt", "lt": "lt", "<=": "le", "le": "le",
    "contains": "contains", "startswith": "startswith", "endswith": "endswith",
}  # fmt: skip
_KNOWN_OPERATORS = "EQ, NE, GT, GE, LT, LE, CONTAINS, STARTSWITH, ENDSWITH, IN, BETWEEN or IS"
_RESERVED = ("and", "or", "not")  # a bare value spelled like these must be quoted
_TOKEN = re.compile(
    r"(?P<string>'(?:[^']|'')*')"
    r"|(?P<azure>(?:datetime|guid)'[^']*')"
    r"|(?P<symbol>>=|<=|!=|<>|[=<>(),])"
    r"|(?P<word>[^\s()',=<>!]+)",
    re.IGNORECASE,
)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)


@dataclass(frozen=True)
class Comparison:
    field: str  # lowercase
    op: str  # eq ne gt ge lt le contains startswith endswith in between null
    values: tuple[Literal, ...]
    negated: bool = False
    position: int | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node: TypeAlias = Comparison | And | Or


# -- Parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # string, azure, symbol or word
    text: str
    pos: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words

    def is_symbol(self, symbol: str) -> bool:
        return self.kind == "symbol" and self.text == symbol

    def shown(self) -> str:
        return self.text if self.kind in ("string", "azure") else f"'{self.text}'"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise FilterError("unterminated quoted string", pos)
            raise FilterError(f"unexpected character '{text[pos]}'", pos)
        tokens.append(_Token(str(match.lastgroup), match.group(), pos))
        pos = match.end()


def _bare_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _NUMBER.fullmatch(text):
        # int() refuses over 4300 digits; no INTEGER column holds such a number anyway.
        return Decimal(text) if "." in text or len(text) > 20 else int(text)
    try:
        return parse_datetime(text)
    except ValueError:
        return text


class _Parser:
    """Recursive descent over the tokens: one method per grammar rule."""

    def __init__(
        self, text: str, fields: Mapping[str, str] | None, azure: bool, max_depth: int
    ) -> None:
        self.tokens = _tokenize(text)
        self.at = 0
        self.end = len(text)
        self.fields = fields  # lowercase name -> the name as the caller spelled it
        self.azure = azure
        self.max_depth = max_depth

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token | None:
        token = self.peek()
        self.at += token is not None
        return token

    def take_word(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.is_word(word):
            self.at += 1
            return True
        return False

    def here(self) -> int:
        token = self.peek()
        return self.end if token is None else token.pos

    def terms(self, depth: int) -> Node:
        items = [self.term(depth)]
        joiner: str | None = None
        while (token := self.peek()) is not None and token.is_word("and", "or"):
            word = token.text.lower()
            if joiner not in (None, word):
                raise FilterError("mixing AND and OR needs parentheses", token.pos)
            joiner = word
            self.at += 1
            items.append(self.term(depth))
        if joiner is None:
            return items[0]
        return And(tuple(items)) if joiner == "and" else Or(tuple(items))

    def term(self, depth: int) -> Node:
        token = self.take()
        if token is None:
            raise FilterError("expected a field name or '('", self.end)
        if token.is_symbol("("):
            if depth >= self.max_depth:
                raise FilterError(f"parentheses nest deeper than {self.max_depth}", token.pos)
            inner = self.terms(depth + 1)
            closing = self.take()
            if closing is None:
                raise FilterError("expected ')'", self.end)
            if not closing.is_symbol(")"):
                raise FilterError(f"expected ')' but found {closing.shown()}", closing.pos)
            return inner
        if token.kind != "word" or not _FIELD.fullmatch(token.text):
            raise FilterError(f"expected a field name or '(' but found {token.shown()}", token.pos)
        return self.comparison(token)

    def comparison(self, name: _Token) -> Comparison:
        field_name = name.text.lower()
        if self.fields is not None and field_name not in self.fields:
            allowed = ", ".join(sorted(self.fields.values(), key=str.lower))
            raise FilterError(f"unknown field '{name.text}'; allowed: {allowed}", name.pos)
        negated = self.take_word("not")
        op = self.take()
        if op is None:
            raise FilterError(f"expected an operator after '{name.text}'", self.end)
        word = op.text.lower() if op.kind in ("word", "symbol") else ""
        if word == "is":
            return self.null_test(field_name, negated, op, name.pos)
        if word == "in":
            return Comparison(field_name, "in", self.value_list(), negated, name.pos)
        if word == "between":
            return Comparison(field_name, "between", self.range(op), negated, name.pos)
        if word not in _OPERATORS:
            message = f"unknown operator {op.shown()}; use {_KNOWN_OPERATORS}"
            raise FilterError(message, op.pos)
        return Comparison(field_name, _OPERATORS[word], (self.value(op),), negated, name.pos)

    def null_test(self, field_name: str, negated: bool, is_: _Token, pos: int) -> Comparison:
        if negated:
            raise FilterError("write IS NOT NULL rather than NOT IS NULL", is_.pos)
        negated = self.take_word("not")
        if not self.take_word("null"):
            raise FilterError(f"expected NULL after IS{' NOT' if negated else ''}", self.here())
        return Comparison(field_name, "null", (), negated, pos)

    def value_list(self) -> tuple[Literal, ...]:
        opening = self.take()
        if opening is None or not opening.is_symbol("("):
            raise FilterError("expected '(' after IN", self.end if opening is None else opening.pos)
        values = [self.value(opening)]
        while (token := self.take()) is None or not token.is_symbol(")"):
            if token is None:
                raise FilterError("expected ',' or ')' to continue the IN list", self.end)
            if not token.is_symbol(","):
                message = f"expected ',' or ')' in the IN list but found {token.shown()}"
                raise FilterError(message, token.pos)
            values.append(self.value(token))
        return tuple(values)

    def range(self, between: _Token) -> tuple[Literal, Literal]:
        low = self.value(between)
        and_ = self.peek()
        if and_ is None or not and_.is_word("and"):
            raise FilterError("expected AND between the two BETWEEN values", self.here())
        self.at += 1
        return low, self.value(and_)

    def value(self, after: _Token) -> Literal:
        token = self.take()
        if token is None:
            raise FilterError(f"expected a value after '{after.text}'", self.end)
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return Literal(text, True, text, token.pos)
        if token.kind == "azure":
            return self.azure_literal(token)
        if token.is_word("null"):
            raise FilterError("null is not a value; use IS NULL or IS NOT NULL", token.pos)
        if token.kind != "word" or token.is_word(*_RESERVED):
            message = f"expected a value after '{after.text}' but found {token.shown()}"
            raise FilterError(message, token.pos)
        return Literal(_bare_value(token.text), False, token.text, token.pos)

    def azure_literal(self, token: _Token) -> Literal:
        prefix, _, rest = token.text.partition("'")
        kind, inner = prefix.lower(), rest[:-1]
        if not self.azure:
            raise FilterError(f"{kind}'...' literals are not supported in this filter", token.pos)
        try:
            value: Any = UUID(inner) if kind == "guid" else parse_datetime(inner)
        except ValueError as exc:
            raise FilterError(f"invalid {kind} literal '{inner}'", token.pos) from exc
        return Literal(value, True, inner, token.pos)


def parse_filter(
    text: str,
    *,
    fields: Collection[str] | None = None,
    azure_literals: bool = False,
    max_length: int = MAX_FILTER_LENGTH,
    max_depth: int = MAX_DEPTH,
) -> Node | None:
    """Parse a filter (None for empty text); unknown fields are errors when `fields` is given."""
    if len(text) > max_length:
        raise FilterError(f"filter is longer than {max_length} characters", max_length)
    if (nul := text.find("\x00")) >= 0:
        # PostgreSQL cannot hold it in a stored rule filter or bind it as a query value, where
        # SQLite can: refused alike on every store, before either sees it.
        raise FilterError("the NUL character (U+0000) is not allowed", nul)
    if not text.strip():
        return None
    allowed = None if fields is None else {name.lower(): name for name in fields}
    parser = _Parser(text, allowed, azure_literals, max_depth)
    node = parser.terms(0)
    extra = parser.peek()
    if extra is not None:
        raise FilterError(f"unexpected {extra.shown()}", extra.pos)
    return node


def fields_of(node: Node | None) -> set[str]:
    """The (lowercase) field names a filter compares."""
    if node is None:
        return set()
    if isinstance(node, Comparison):
        return {node.field}
    return set().union(*(fields_of(item) for item in node.items))


# -- Field types ----------------------------------------------------------------------------


def typed_values(node: Comparison, kind: FieldType | None, fields: Collection[str]) -> list[Any]:
    """A comparison's values as its field's type (`kind`, None when the field is not among
    `fields`); a LIKE operator's is its text. A FilterError says what does not fit."""
    if kind is None:
        raise unknown_field(node.field, fields, node.position)
    if node.op not in LIKE_OPS:
        return [field_value(value, kind, node.field) for value in node.values]
    if kind is FieldType.TEXT:
        return [node.values[0].source]
    message = f"{node.op.upper()} needs a text field; '{node.field}' is {kind.value}"
    raise FilterError(message, node.position)


# -- Evaluation against records ---------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
    "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}  # fmt: skip
# What a typed literal makes of the record's value (bool first: a bool is also an int).
_KINDS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (bool, as_bool),
    ((int, Decimal), as_number),
    (datetime, as_datetime),
    (UUID, as_uuid),
)


def evaluate(node: Node | None, record: Mapping[str, Any]) -> bool:
    """Whether one JSON record passes the filter; no filter passes every record."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(item, record) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, record) for item in node.items)
    # Partners send keys in any casing; the AST holds field names in lowercase.
    value = next((v for k, v in record.items() if k.lower() == node.field), None)
    return _holds(node, value)


def _holds(node: Comparison, value: Any) -> bool:
    if node.op == "null":
        return (value is None) != node.negated
    if value is None:
        return False  # as in SQL: a comparison with NULL is never true, negated or not
    if node.op == "in":
        result = any(_compare("eq", value, item) for item in node.values)
    elif node.op == "between":
        low, high = node.values
        result = _compare("ge", value, low) and _compare("le", value, high)
    else:
        result = _compare(node.op, value, node.values[0])
    return result != node.negated


def _compare(op: str, left: Any, literal: Literal) -> bool:
    if isinstance(left, dict | list):
        return op == "ne"
    if op in LIKE_OPS:
        text, part = _text(left).lower(), literal.source.lower()
        matches = {"contains": part in text, "startswith": text.startswith(part)}
        return matches.get(op, text.endswith(part))
    pair = _typed_pair(left, literal)
    if pair is None:
        return op == "ne"  # values of different kinds are never equal and never ordered
    return bool(_COMPARE[op](*pair))


def _typed_pair(left: Any, literal: Literal) -> tuple[Any, Any] | None:
    """Both sides as one type, chosen by the literal; None if the record's value won't fit."""
    if isinstance(left, bool):  # a JSON boolean: the filter may say true/false or 1/0
        other = as_bool(literal.value)
        return None if other is None else (left, other)
    for kind, convert in _KINDS:
        if isinstance(literal.value, kind):
            converted = convert(left)
            return None if converted is None else (converted, convert(literal.value))
    # A quoted or bare-word literal: a JSON number, a date or a GUID still compares as such.
    kinds: tuple[Callable[[Any], Any], ...] = (as_datetime, as_uuid)
    for convert in kinds if isinstance(left, str) else (as_number, *kinds):
        mine, theirs = convert(left), convert(literal.source)
        if mine is not None and theirs is not None:
            return mine, theirs
    return str(left), literal.source


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
