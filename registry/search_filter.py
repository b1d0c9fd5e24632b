"""The model search filter: an MLflow-like filter string parsed into a small syntax tree.

Grammar (keywords are case-insensitive)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := term ("and" term)*
    term       := "(" or_expr ")" | comparison
    comparison := field op value | field ["not"] "in" "(" value ("," value)* ")"
    field      := attribute | "metrics." name | "tags." name
    op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "ilike"
    value      := number | 'text' | "text"

``attribute`` is one of :data:`ATTRIBUTES`; a name after ``metrics.``/``tags.`` may use the
characters of metric names (``ndcg@10``, ``recall@20``) or be quoted in backticks. The parser
never produces SQL text: :mod:`registry.search` turns the tree into SQLAlchemy expressions.
Errors are :class:`~registry.errors.FilterSyntaxError` with the offending token's position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FilterSyntaxError

ATTRIBUTES = ("model_id", "model_type", "version", "status", "created_at", "data_version", "git_commit", "description")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=", "like", "ilike")
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9_@]))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<field>(?:metrics|tags)\.(?:`[^`]+`|[A-Za-z0-9@._:/-]+)|[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Comparison:
    """``field op value``; for ``in``/``not in`` the value is a tuple."""

    kind: str  # "attribute", "metric" or "tag"
    name: str
    op: str
    value: float | str | tuple[float | str, ...]
    position: int


@dataclass(frozen=True)
class BoolOp:
    """``and``/``or`` of two or more parts."""

    op: str
    parts: tuple[Node, ...]


Node = Comparison | BoolOp


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def tokenize(text: str) -> list[_Token]:
    """Split a filter into tokens, or raise FilterSyntaxError at the first character that fits none."""
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterSyntaxError(text, position, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


def parse_filter(text: str) -> Node | None:
    """Parse a filter string; an empty or blank filter gives None (match everything)."""
    if not isinstance(text, str):
        raise FilterSyntaxError(str(text), 0, "the filter must be a string")
    tokens = tokenize(text)
    if not tokens:
        return None
    parser = _Parser(text, tokens)
    node = parser.or_expr()
    if parser.index < len(tokens):
        parser.fail("expected 'and', 'or' or the end of the filter")
    return node


def parse_order_by(items: list[str] | tuple[str, ...] | None) -> list[tuple[str, str, bool]]:
    """``["metrics.ndcg@10 desc", "created_at"]`` -> ``[(kind, name, descending), ...]``."""
    parsed: list[tuple[str, str, bool]] = []
    for item in items or []:
        if not isinstance(item, str):
            raise FilterSyntaxError(str(item), 0, "each order_by entry must be a string like 'metrics.ndcg@10 desc'")
        tokens = tokenize(item)
        if not tokens or tokens[0].kind != "field":
            raise FilterSyntaxError(item, tokens[0].position if tokens else 0, "expected a field to order by")
        kind, name = _field(item, tokens[0])
        descending = False
        if len(tokens) >= 2:
            direction = tokens[1].text.lower()
            if tokens[1].kind != "field" or direction not in ("asc", "desc"):
                raise FilterSyntaxError(item, tokens[1].position, "expected 'asc' or 'desc'")
            descending = direction == "desc"
        if len(tokens) > 2:
            raise FilterSyntaxError(item, tokens[2].position, "unexpected text after the direction")
        parsed.append((kind, name, descending))
    return parsed


def _field(text: str, token: _Token) -> tuple[str, str]:
    word = token.text
    for prefix, kind in (("metrics.", "metric"), ("tags.", "tag")):
        if word.startswith(prefix):
            return kind, word[len(prefix):].strip("`")
    if word.lower() in ATTRIBUTES:
        return "attribute", word.lower()
    raise FilterSyntaxError(
        text, token.position,
        f"unknown field {word!r}: use metrics.<name>, tags.<key> or one of {', '.join(ATTRIBUTES)}",
    )


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def fail(self, message: str) -> None:
        token = self.peek()
        raise FilterSyntaxError(self.text, token.position if token else len(self.text), message)

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "field" and token.text.lower() == word:
            self.index += 1
            return True
        return False

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.index += 1
            return True
        return False

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.term()]
        while self.keyword("and"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def term(self) -> Node:
        if self.punct("("):
            node = self.or_expr()
            if not self.punct(")"):
                self.fail("expected ')'")
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        token = self.peek()
        if token is None or token.kind != "field" or token.text.lower() in ("and", "or", "not", "in"):
            self.fail("expected a field such as metrics.ndcg@10, tags.team or model_type")
        assert token is not None
        self.index += 1
        kind, name = _field(self.text, token)
        negate = self.keyword("not")
        if self.keyword("in"):
            return Comparison(kind, name, "not in" if negate else "in", self.value_list(), token.position)
        if negate:
            self.fail("expected 'in' after 'not'")
        op_token = self.peek()
        op = op_token.text.lower() if op_token is not None else ""
        if op_token is None or op_token.kind not in ("op", "field") or op not in (*COMPARISONS, "<>"):
            self.fail("expected a comparison: =, !=, <, <=, >, >=, like, ilike, in")
        self.index += 1
        return Comparison(kind, name, "!=" if op == "<>" else op, self.value(), token.position)

    def value(self) -> float | str:
        token = self.peek()
        if token is None or token.kind not in ("number", "string"):
            self.fail("expected a number or a quoted string")
        assert token is not None
        self.index += 1
        if token.kind == "number":
            return float(token.text)
        return re.sub(r"\\(.)", r"\1", token.text[1:-1])

    def value_list(self) -> tuple[float | str, ...]:
        if not self.punct("("):
            self.fail("expected '(' after 'in'")
        values = [self.value()]
        while self.punct(","):
            values.append(self.value())
        if not self.punct(")"):
            self.fail("expected ',' or ')'")
        return tuple(values)
