"""The filter language (DESIGN §3, a Searchlight subset): parse, compile to SQL, evaluate.

    expr    := group (AND group)* | group (OR group)*     (mixing needs parentheses)
    group   := '(' expr ')' | field [NOT] op value...
    op      := = EQ != <> NE > GT >= GE < LT <= LE CONTAINS STARTSWITH ENDSWITH
               IN (v, ...) | BETWEEN v AND v | IS [NOT] NULL

Query filters become parameterized SQL over whitelisted columns; user text only ever travels
as bind parameters. Rule filters are evaluated in Python against each record of an event.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from gateway.errors import FilterError

MAX_FILTER_LENGTH = 2000
MAX_DEPTH = 10

COMPARISONS = {
    "=": "eq",
    "eq": "eq",
    "!=": "ne",
    "<>": "ne",
    "ne": "ne",
    ">": "gt",
    "gt": "gt",
    ">=": "ge",
    "ge": "ge",
    "<": "lt",
    "lt": "lt",
    "<=": "le",
    "le": "le",
    "contains": "contains",
    "startswith": "startswith",
    "endswith": "endswith",
}
SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<azure>(?:datetime|guid)'[^']*')"
    r"|(?P<op>>=|<=|!=|<>|=|>|<|\(|\)|,)|(?P<word>[^\s()',=<>!]+)|(?P<bad>'))",
    re.IGNORECASE,
)


class FieldType(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    UUID = "uuid"


@dataclass(frozen=True)
class Column:
    sql: str
    type: FieldType


@dataclass(frozen=True)
class Literal:
    value: Any  # str, int, Decimal, bool, datetime, or a UUID
    quoted: bool


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # eq ne gt ge lt le contains startswith endswith in between null
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Comparison | And | Or


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise FilterError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or "bad"
        if kind == "bad":
            raise FilterError("unterminated quoted string", match.start(kind))
        tokens.append(_Tok(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: Collection[str] | None, azure: bool, depth: int) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields = fields
        self.azure = azure
        self.max_depth = depth
        self.end = len(text)

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"expected {what} but the filter ended", self.end)
        self.i += 1
        return tok

    def keyword(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.lower() in words:
            self.i += 1
            return True
        return False

    def expr(self, depth: int) -> Node:
        if depth > self.max_depth:
            raise FilterError(f"parentheses nest deeper than {self.max_depth}", self._pos())
        items = [self.group(depth)]
        joiner: str | None = None
        while (
            (tok := self.peek()) is not None
            and tok.kind == "word"
            and tok.text.lower() in ("and", "or")
        ):
            word = tok.text.lower()
            if joiner is not None and word != joiner:
                raise FilterError("mixing AND and OR needs parentheses", tok.pos)
            joiner = word
            self.i += 1
            items.append(self.group(depth))
        if joiner is None:
            return items[0]
        return And(tuple(items)) if joiner == "and" else Or(tuple(items))

    def group(self, depth: int) -> Node:
        tok = self.next("a field name or '('")
        if tok.text == "(":
            inner = self.expr(depth + 1)
            close = self.next("')'")
            if close.text != ")":
                raise FilterError(f"expected ')' but found {close.text!r}", close.pos)
            return inner
        if tok.kind != "word":
            raise FilterError(f"expected a field name but found {tok.text!r}", tok.pos)
        return self.comparison(tok)

    def comparison(self, field_tok: _Tok) -> Comparison:
        field = field_tok.text.lower()
        if self.fields is not None and field not in self.fields:
            allowed = ", ".join(sorted(self.fields))
            raise FilterError(
                f"unknown field '{field_tok.text}'; allowed: {allowed}", field_tok.pos
            )
        negated = self.keyword("not")
        op_tok = self.next(f"an operator after '{field_tok.text}'")
        op = op_tok.text.lower()
        if op == "is":
            null_negated = self.keyword("not")
            if not self.keyword("null"):
                raise FilterError("expected NULL after IS", self._pos())
            return Comparison(field, "null", (), negated != null_negated)
        if op == "in":
            return Comparison(field, "in", self.value_list(), negated)
        if op == "between":
            low = self.value(op_tok)
            if not self.keyword("and"):
                raise FilterError("expected AND in BETWEEN", self._pos())
            return Comparison(field, "between", (low, self.value(op_tok)), negated)
        if op not in COMPARISONS:
            raise FilterError(f"unknown operator '{op_tok.text}'", op_tok.pos)
        return Comparison(field, COMPARISONS[op], (self.value(op_tok),), negated)

    def value_list(self) -> tuple[Literal, ...]:
        opening = self.next("'('")
        if opening.text != "(":
            raise FilterError("expected '(' after IN", opening.pos)
        values = [self.value(opening)]
        while (tok := self.next("',' or ')'")).text == ",":
            values.append(self.value(tok))
        if tok.text != ")":
            raise FilterError(f"expected ',' or ')' but found {tok.text!r}", tok.pos)
        return tuple(values)

    def value(self, after: _Tok) -> Literal:
        tok = self.next(f"a value after '{after.text}'")
        if tok.kind == "str":
            return Literal(tok.text[1:-1].replace("''", "'"), True)
        if tok.kind == "azure":
            return self.azure_literal(tok)
        if tok.kind != "word":
            raise FilterError(f"expected a value after '{after.text}'", tok.pos)
        return Literal(_bare(tok.text), False)

    def azure_literal(self, tok: _Tok) -> Literal:
        if not self.azure:
            raise FilterError("datetime'…' and guid'…' literals are for history filters", tok.pos)
        kind, _, rest = tok.text.partition("'")
        inner = rest[:-1]
        try:
            if kind.lower() == "guid":
                return Literal(UUID(inner), True)
            return Literal(_parse_datetime(inner), True)
        except ValueError as exc:
            raise FilterError(f"invalid {kind.lower()} literal {inner!r}", tok.pos) from exc

    def _pos(self) -> int:
        tok = self.peek()
        return tok.pos if tok else self.end


def _bare(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return Decimal(text)
    return text


def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_filter(
    text: str,
    *,
    fields: Collection[str] | None = None,
    azure_literals: bool = False,
    max_length: int = MAX_FILTER_LENGTH,
    max_depth: int = MAX_DEPTH,
) -> Node | None:
    """Parse a filter; None for empty text. Unknown fields are errors when `fields` is given."""
    if len(text) > max_length:
        raise FilterError(f"filter is longer than {max_length} characters", max_length)
    if not text.strip():
        return None
    parser = _Parser(text, fields, azure_literals, max_depth)
    node = parser.expr(0)
    extra = parser.peek()
    if extra is not None:
        raise FilterError(f"unexpected {extra.text!r}", extra.pos)
    return node


# -- SQL ----------------------------------------------------------------------------------


def _convert(value: Any, column: Column, field: str) -> Any:
    try:
        if column.type is FieldType.DATETIME:
            return value if isinstance(value, datetime) else _parse_datetime(str(value))
        if column.type is FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            if str(value) in ("1", "0"):
                return str(value) == "1"
            raise ValueError("expected true or false")
        if column.type is FieldType.INTEGER:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return int(str(value))
        if column.type is FieldType.UUID:
            return str(UUID(str(value)))
        return str(value)
    except ValueError as exc:
        raise FilterError(f"{value!r} is not a valid value for {field}") from exc


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile_filter(
    node: Node | None, columns: Mapping[str, Column], placeholder: Callable[[int], str]
) -> tuple[str, list[Any]]:
    """A WHERE fragment and its parameters; no user text reaches the SQL string."""
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    def walk(n: Node) -> str:
        if isinstance(n, And | Or):
            glue = " AND " if isinstance(n, And) else " OR "
            return "(" + glue.join(walk(i) for i in n.items) + ")"
        return _comparison_sql(n, columns, bind)

    return ("1=1", []) if node is None else (walk(node), params)


def _comparison_sql(
    n: Comparison, columns: Mapping[str, Column], bind: Callable[[Any], str]
) -> str:
    column = columns.get(n.field)
    if column is None:
        raise FilterError(f"unknown field '{n.field}'")
    values = [_convert(v.value, column, n.field) for v in n.values]
    col = column.sql
    if n.op == "null":
        sql = f"{col} IS NULL"
    elif n.op == "in":
        sql = f"{col} IN ({', '.join(bind(v) for v in values)})"
    elif n.op == "between":
        sql = f"{col} BETWEEN {bind(values[0])} AND {bind(values[1])}"
    elif n.op in SQL_OPS:
        sql = f"{col} {SQL_OPS[n.op]} {bind(values[0])}"
    else:
        pattern = _escape_like(str(values[0]))
        pattern = {
            "contains": f"%{pattern}%",
            "startswith": f"{pattern}%",
            "endswith": f"%{pattern}",
        }[n.op]
        sql = f"LOWER({col}) LIKE LOWER({bind(pattern)}) ESCAPE '\\'"
    return f"NOT ({sql})" if n.negated else sql


def compile_order(text: str | None, columns: Mapping[str, Column], *, default: str) -> str:
    """`field [ASC|DESC], ...` as an ORDER BY body over whitelisted columns."""
    source = text if text and text.strip() else default
    parts = []
    for item in source.split(","):
        words = item.split()
        if not words or len(words) > 2:
            raise FilterError(f"cannot read order item {item.strip()!r}", field="order")
        column = columns.get(words[0].lower())
        if column is None:
            allowed = ", ".join(sorted(columns))
            raise FilterError(f"unknown field '{words[0]}'; allowed: {allowed}", field="order")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise FilterError(
                f"order direction must be ASC or DESC, not {words[1]!r}", field="order"
            )
        parts.append(f"{column.sql} {direction}")
    return ", ".join(parts)


# -- Evaluation against records -------------------------------------------------------------


def _lookup(record: Mapping[str, Any], field: str) -> Any:
    for key, value in record.items():
        if key.lower() == field:
            return value
    return None


def _coerce_pair(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Both sides as comparable values (numbers, datetimes, bools, or strings)."""
    if isinstance(right, bool) or isinstance(left, bool):
        return (
            (left, right)
            if isinstance(left, bool) and isinstance(right, bool)
            else (str(left).lower(), str(right).lower())
        )
    try:
        return Decimal(str(left)), Decimal(str(right))
    except InvalidOperation:
        pass
    if isinstance(right, datetime) or re.match(r"\d{4}-\d{2}-\d{2}", str(right)):
        try:
            return _parse_datetime(str(left)), _parse_datetime(str(right))
        except ValueError:
            pass
    return str(left), str(right)


def _test(op: str, left: Any, right: Any) -> bool:
    if op in ("contains", "startswith", "endswith"):
        a, b = str(left).lower(), str(right).lower()
        return {"contains": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[op]
    pair = _coerce_pair(left, right)
    if pair is None:
        return False
    a, b = pair
    try:
        return bool(
            {"eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
        )
    except TypeError:
        return False


def _evaluate_comparison(n: Comparison, record: Mapping[str, Any]) -> bool:
    value = _lookup(record, n.field)
    values = [v.value for v in n.values]
    if n.op == "null":
        result = value is None
    elif value is None:
        result = False
    elif n.op == "in":
        result = any(_test("eq", value, v) for v in values)
    elif n.op == "between":
        result = _test("ge", value, values[0]) and _test("le", value, values[1])
    else:
        result = _test(n.op, value, values[0])
    return result != n.negated if value is not None or n.op == "null" else False


def evaluate(node: Node | None, record: Mapping[str, Any]) -> bool:
    """Whether one record passes the filter (None passes everything)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(i, record) for i in node.items)
    if isinstance(node, Or):
        return any(evaluate(i, record) for i in node.items)
    return _evaluate_comparison(node, record)
