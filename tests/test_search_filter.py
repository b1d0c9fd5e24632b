"""The search filter parser: grammar, values, and errors that point at the offending token."""

from __future__ import annotations

import pytest

from registry.errors import FilterSyntaxError, InvalidArgumentError
from registry.search_filter import BoolOp, Comparison, parse_filter, parse_order_by


def test_the_documented_example_parses_into_four_comparisons() -> None:
    node = parse_filter("metrics.ndcg@10 > 0.1 and model_type = 'als' and tags.team = 'search' and created_at >= '2026-01-01'")
    assert isinstance(node, BoolOp) and node.op == "and"
    assert [(c.kind, c.name, c.op, c.value) for c in node.parts] == [  # type: ignore[union-attr]
        ("metric", "ndcg@10", ">", 0.1),
        ("attribute", "model_type", "=", "als"),
        ("tag", "team", "=", "search"),
        ("attribute", "created_at", ">=", "2026-01-01"),
    ]


def test_precedence_parentheses_in_lists_and_quoting() -> None:
    node = parse_filter("model_type = 'als' or model_type = 'bpr' and (tags.`my key` != \"it's\" or metrics.recall@20 <= -1e-3)")
    assert isinstance(node, BoolOp) and node.op == "or"
    right = node.parts[1]
    assert isinstance(right, BoolOp) and right.op == "and"
    inner = right.parts[1]
    assert isinstance(inner, BoolOp) and inner.op == "or"
    assert inner.parts[0] == Comparison("tag", "my key", "!=", "it's", 46)
    assert inner.parts[1].value == -0.001  # type: ignore[union-attr]
    listed = parse_filter("STATUS NOT IN ('archived', 'inactive') AND version LIKE 'v2%'")
    assert isinstance(listed, BoolOp)
    assert listed.parts[0] == Comparison("attribute", "status", "not in", ("archived", "inactive"), 0)
    assert listed.parts[1].op == "like"  # type: ignore[union-attr]


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_filter_matches_everything(blank: str) -> None:
    assert parse_filter(blank) is None


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("metrics.ndcg@10 >", 17, "expected a number"),
        ("foo = 1", 0, "unknown field 'foo'"),
        ("model_type = als", 13, "expected a number or a quoted string"),
        ("model_type = 'a' and", 20, "expected a field"),
        ("(model_type = 'a'", 17, "expected ')'"),
        ("model_type ~ 1", 11, "unexpected character"),
        ("model_type = 'a' model_id = 'b'", 17, "expected 'and', 'or'"),
        ("model_type not = 'a'", 15, "expected 'in' after 'not'"),
        ("model_type in 'a'", 14, "expected '('"),
        ("'unterminated", 0, "unexpected character"),
    ],
)
def test_errors_name_the_offending_position(text: str, position: int, reason: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    assert caught.value.position == position
    assert caught.value.reason.startswith(reason)
    assert isinstance(caught.value, InvalidArgumentError)  # callers catching ValueError keep working
    assert str(caught.value).splitlines()[-1] == " " * (position + 2) + "^"


def test_order_by_entries() -> None:
    assert parse_order_by(["metrics.ndcg@10 desc", "created_at", "tags.team ASC"]) == [
        ("metric", "ndcg@10", True), ("attribute", "created_at", False), ("tag", "team", False),
    ]
    assert parse_order_by(None) == []
    for bad in (["metrics.ndcg@10 sideways"], ["nope desc"], ["created_at desc extra"], [3]):
        with pytest.raises(FilterSyntaxError):
            parse_order_by(bad)  # type: ignore[arg-type]
