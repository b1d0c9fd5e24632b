"""Model search: a parsed filter (:mod:`registry.search_filter`) compiled to SQLAlchemy.

Nothing from the filter string reaches SQL as text: field names select columns or correlated
``EXISTS`` sub-queries, values are bound parameters. ``metrics.X op v`` matches models that have
metric X with such a value (a missing metric never matches, as in selection); ``tags.K op 'v'``
matches models with tag K so valued. One read transaction: the page of models, then the metrics
and tags of that page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select
from sqlalchemy.orm import Session

from .errors import FilterSyntaxError
from .models import Model, ModelMetric, ModelTag
from .search_filter import BoolOp, Comparison, Node, parse_filter, parse_order_by

MAX_PAGE_SIZE = 10_000
_COLUMNS = {
    "model_id": Model.model_id,
    "model_type": Model.model_type,
    "version": Model.version,
    "status": Model.status,
    "created_at": Model.created_at,
    "data_version": Model.data_version,
    "git_commit": Model.git_commit,
    "description": Model.description,
}


def compile_filter(text: str, node: Node | None) -> ColumnElement[bool] | None:
    """The SQL condition for a parsed filter (None: no condition)."""
    if node is None:
        return None
    if isinstance(node, BoolOp):
        parts = [compile_filter(text, part) for part in node.parts]
        return (and_ if node.op == "and" else or_)(*[p for p in parts if p is not None])
    return _comparison(text, node)


def _comparison(text: str, node: Comparison) -> ColumnElement[bool]:
    if node.kind == "metric":
        _expect(text, node, float, "a number")
        value_column: Any = ModelMetric.value
        condition = _apply(text, node, value_column, node.value)
        return exists().where(ModelMetric.model_id == Model.model_id, ModelMetric.name == node.name, condition)
    if node.kind == "tag":
        _expect(text, node, str, "a quoted string")
        condition = _apply(text, node, ModelTag.value, node.value)
        return exists().where(ModelTag.model_id == Model.model_id, ModelTag.key == node.name, condition)
    column = _COLUMNS[node.name]
    if node.name == "created_at":
        if node.op in ("like", "ilike"):
            raise FilterSyntaxError(text, node.position, "created_at takes =, !=, <, <=, >, >=, in with ISO dates")
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        times = tuple(_timestamp(text, node, value) for value in values)
        return _apply(text, node, column, times if isinstance(node.value, tuple) else times[0])
    _expect(text, node, str, "a quoted string")
    return _apply(text, node, column, node.value)


def _apply(text: str, node: Comparison, column: Any, value: Any) -> ColumnElement[bool]:
    op = node.op
    if op in ("like", "ilike") and not isinstance(value, str):
        raise FilterSyntaxError(text, node.position, f"{op} needs a quoted pattern")
    if op == "in":
        return column.in_(list(value)) if value else false()
    if op == "not in":
        return not_(column.in_(list(value))) if value else not_(false())
    return {
        "=": lambda: column == value,
        "!=": lambda: column != value,
        "<": lambda: column < value,
        "<=": lambda: column <= value,
        ">": lambda: column > value,
        ">=": lambda: column >= value,
        "like": lambda: column.like(value),
        "ilike": lambda: column.ilike(value),
    }[op]()


def _expect(text: str, node: Comparison, kind: type, described: str) -> None:
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if not all(isinstance(value, kind) for value in values):
        field = {"metric": f"metrics.{node.name}", "tag": f"tags.{node.name}"}.get(node.kind, node.name)
        raise FilterSyntaxError(text, node.position, f"{field} is compared with {described}")


def _timestamp(text: str, node: Comparison, value: object) -> datetime:
    if not isinstance(value, str):
        raise FilterSyntaxError(text, node.position, "created_at is compared with a quoted ISO date such as '2026-01-01'")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterSyntaxError(text, node.position, f"{value!r} is not an ISO date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def order_clauses(order_by: list[str] | tuple[str, ...] | None) -> list[Any]:
    """ORDER BY clauses for ``["metrics.ndcg@10 desc", ...]``; missing values sort last; newest first breaks ties."""
    clauses: list[Any] = []
    for kind, name, descending in parse_order_by(order_by):
        if kind == "metric":
            expression: Any = (
                select(ModelMetric.value)
                .where(ModelMetric.model_id == Model.model_id, ModelMetric.name == name)
                .scalar_subquery()
            )
        elif kind == "tag":
            expression = select(ModelTag.value).where(ModelTag.model_id == Model.model_id, ModelTag.key == name).scalar_subquery()
        else:
            expression = _COLUMNS[name]
        clauses.append((expression.desc() if descending else expression.asc()).nulls_last())
    clauses.extend([Model.created_at.desc(), Model.model_id])
    return clauses


def search_rows(
    session: Session, filter_string: str, order_by: list[str] | tuple[str, ...] | None, limit: int | None, offset: int
) -> list[Any]:
    """Rows ``(model_id, model_type, version, status, created_at, training_info)`` of one page."""
    condition = compile_filter(filter_string, parse_filter(filter_string))
    statement = select(
        Model.model_id, Model.model_type, Model.version, Model.status, Model.created_at, Model.training_info
    ).order_by(*order_clauses(order_by))
    if condition is not None:
        statement = statement.where(condition)
    if limit is not None:
        statement = statement.limit(limit)
    if offset:
        statement = statement.offset(offset)
    return list(session.connection().execute(statement).all())
