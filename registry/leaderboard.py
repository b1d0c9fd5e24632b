"""Paged, sorted, filtered model listings and metric series for dashboards.

:meth:`ModelRegistry.list_models` builds a DataFrame of every model (about 200 ms
at 10,000 models). A dashboard shows one page at a time, so :func:`leaderboard_page`
answers a page from one SQL statement: the page's models (filtered, sorted by any
column or metric, missing values last), each with all its metrics, the total match count
and the current-best id; a metric sort first reads the page's ids from the metric's index
(:func:`_metric_page`). Two more statements restricted to the page's ids add the aliases
pointing at each model and its tags. :func:`metric_series` and :func:`metric_pairs` feed charts.

Usage::

    page = leaderboard_page(registry.context, sort="ndcg@10", per_page=25)
    page.total, [row.model_id for row in page.rows]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, literal, select
from sqlalchemy.orm import Session, aliased

from .errors import InvalidArgumentError
from .models import CURRENT_BEST_ALIAS, Alias, Model, ModelMetric, Settings
from .tags import tags_of
from .timestamps import format_timestamp as iso
from .validation import (
    finite_real,
    validate_identifier,
    validate_metric_name,
    validate_status,
)

if TYPE_CHECKING:
    from .context import RegistryContext

SORT_COLUMNS = ("model_id", "model_type", "version", "status", "created_at", "training_time")
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000
MAX_SEARCH_LENGTH = 128
MAX_SERIES_POINTS = 5_000

__all__ = [
    "MAX_PER_PAGE",
    "SORT_COLUMNS",
    "LeaderboardPage",
    "LeaderboardRow",
    "leaderboard_page",
    "metric_names",
    "metric_pairs",
    "metric_series",
    "model_types",
]


@dataclass(frozen=True)
class LeaderboardRow:
    """One model on a leaderboard page."""

    model_id: str
    model_type: str
    version: str
    status: str
    created_at: str | None
    metrics: dict[str, float]
    training_time: float | None
    is_current: bool
    aliases: list[str] = field(default_factory=list)  # names pointing at it, ``current_best`` first
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class LeaderboardPage:
    """One page of models plus what is needed to draw the pager and the columns."""

    rows: list[LeaderboardRow]
    total: int
    page: int
    per_page: int
    sort: str
    ascending: bool
    current_best: str | None
    metric_names: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))


def _page_arguments(page: object, per_page: object) -> tuple[int, int]:
    for value, name, upper in ((page, "page", MAX_PAGE), (per_page, "per_page", MAX_PER_PAGE)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
            raise InvalidArgumentError(f"{name} must be an integer between 1 and {upper:,}, got {value!r}")
    return page, per_page  # type: ignore[return-value]


def _search_text(search: object) -> str | None:
    if search is None or search == "":
        return None
    if not isinstance(search, str) or len(search) > MAX_SEARCH_LENGTH or not search.isprintable():
        raise InvalidArgumentError(f"search must be printable text of at most {MAX_SEARCH_LENGTH} characters, got {search!r}")
    return search.strip().lower() or None


def leaderboard_page(
    context: RegistryContext,
    *,
    model_type: str | None = None,
    status: str | None = None,
    search: str | None = None,
    sort: str = "created_at",
    ascending: bool = False,
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
) -> LeaderboardPage:
    """One page of models, filtered and sorted (see the module doc for the statements).

    Args:
        context: the opened registry (``ModelRegistry.context``).
        model_type: only this type. status: only this status.
        search: case-insensitive substring of the model id.
        sort: one of :data:`SORT_COLUMNS` or a metric name; models lacking the
            value sort last in either direction; ties go to the newest model.
        ascending: sort direction.
        page: 1-based page number. per_page: 1 to :data:`MAX_PER_PAGE`.

    Raises:
        InvalidArgumentError: a malformed filter, an unknown sort key (a metric no
            model has) or a page size out of range.
    """
    if model_type is not None:
        validate_identifier(model_type, "model_type")
    if status is not None:
        validate_status(status)
    needle = _search_text(search)
    if not isinstance(sort, str):
        raise InvalidArgumentError(f"sort must be a column or metric name, got {sort!r}")
    by_metric = sort not in SORT_COLUMNS
    if by_metric:
        try:
            validate_metric_name(sort)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"unknown sort {sort!r}: use one of {list(SORT_COLUMNS)} or a metric name") from exc
    if isinstance(ascending, str) or ascending not in (True, False):
        raise InvalidArgumentError(f"ascending must be True or False, got {ascending!r}")
    page, per_page = _page_arguments(page, per_page)

    def work(session: Session) -> LeaderboardPage:
        conditions = []
        if model_type is not None:
            conditions.append(Model.model_type == model_type)
        if status is not None:
            conditions.append(Model.status == status)
        if needle is not None:
            conditions.append(func.lower(Model.model_id).contains(needle, autoescape=True))
        total = select(func.count()).select_from(Model).where(*conditions).scalar_subquery()
        current = select(Settings.current_model_id).where(Settings.id == 1).scalar_subquery()
        columns = (total.label("total"), Model.model_id, Model.model_type, Model.version, Model.status,
                   Model.created_at, Model.training_info, current.label("current_best"),
                   ModelMetric.name.label("metric_name"), ModelMetric.value.label("metric_value"))
        if by_metric:
            # The page's ids first (index-ordered, see _metric_page), then their columns and metrics.
            ids = _metric_page(session, sort, conditions, ascending, page, per_page)
            position = {model_id: index for index, model_id in enumerate(ids)}
            statement = (select(*columns).outerjoin(ModelMetric, ModelMetric.model_id == Model.model_id)
                         .where(Model.model_id.in_(ids)))
            in_order = sorted(session.connection().execute(statement).all(),
                              key=lambda record: (position[record.model_id], record.metric_name or ""))
            return _assemble(session, in_order, conditions, sort, by_metric, ascending, page, per_page)
        key: Any = Model.training_info["training_time_seconds"].as_float() if sort == "training_time" else getattr(Model, sort)

        # Window functions (count/row_number over) would materialise every row: ~3x slower at
        # 10,000 models. The page is the narrow (id, key) rows; the total an uncorrelated scalar
        # subquery (evaluated once); wide columns and metrics are joined to the page's rows only.
        paged = (select(Model.model_id, Model.created_at, key.label("sort_key")).where(*conditions)
                 .order_by(*_ordered(key, Model.created_at, Model.model_id, ascending))
                 .limit(per_page).offset((page - 1) * per_page).subquery())
        statement = (
            select(*columns)
            .select_from(paged)
            .join(Model, Model.model_id == paged.c.model_id)
            .outerjoin(ModelMetric, ModelMetric.model_id == paged.c.model_id)
            .order_by(*_ordered(paged.c.sort_key, paged.c.created_at, paged.c.model_id, ascending), ModelMetric.name)
        )
        records = session.connection().execute(statement).all()
        return _assemble(session, records, conditions, sort, by_metric, ascending, page, per_page)

    return context.read(work)


def _ordered(sort_key: Any, created_at: Any, model_id: Any, ascending: bool) -> list[Any]:
    """The page order: the key in the asked direction, missing values last, then the newest model."""
    direction = sort_key.asc() if ascending else sort_key.desc()
    return [direction.nulls_last(), created_at.desc(), model_id.desc()]


def _metric_page(session: Session, metric: str, conditions: list[Any], ascending: bool, page: int,
                 per_page: int) -> list[str]:
    """The ids on one page of models sorted by ``metric``, models without it last.

    Models with the metric come from the ``(name, value)`` index in order, so a page near the
    top reads a page's worth of rows (an outer join sorted every model: 170 ms against 2 ms at
    100,000 models). Models lacking the metric (newest first) are read only for a page that
    reaches past the models that have it.
    """
    offset = (page - 1) * per_page
    ranked = aliased(ModelMetric)
    has = (select(Model.model_id).join(ranked, and_(ranked.model_id == Model.model_id, ranked.name == metric))
           .where(*conditions))
    # No NULLS LAST here (a recorded value is never NULL): SQLite would not walk the index for it.
    value = ranked.value.asc() if ascending else ranked.value.desc()
    ids = list(session.scalars(has.order_by(value, Model.created_at.desc(), Model.model_id.desc())
                               .limit(per_page).offset(offset)))
    if len(ids) == per_page:
        return ids
    having = offset + len(ids) if ids else int(session.scalar(select(func.count()).select_from(has.subquery())) or 0)
    recorded = select(ranked.model_id).where(ranked.model_id == Model.model_id, ranked.name == metric).exists()
    lacking = (select(Model.model_id).where(*conditions, ~recorded)
               .order_by(Model.created_at.desc(), Model.model_id.desc())
               .limit(per_page - len(ids)).offset(max(0, offset - having)))
    return ids + list(session.scalars(lacking))


def _assemble(session: Session, records: Sequence[Any], conditions: list[Any], sort: str, by_metric: bool,
              ascending: bool, page: int, per_page: int) -> LeaderboardPage:
    rows: list[LeaderboardRow] = []
    total, current_best = 0, None
    names: set[str] = set()
    for record in records:
        if not rows or rows[-1].model_id != record.model_id:
            info = record.training_info
            if isinstance(info, str):  # drivers that hand JSON back as text
                info = json.loads(info)
            rows.append(LeaderboardRow(
                model_id=record.model_id, model_type=record.model_type, version=record.version,
                status=record.status, created_at=iso(record.created_at), metrics={},
                training_time=finite_real((info or {}).get("training_time_seconds")),
                is_current=record.model_id == record.current_best,
            ))
            total, current_best = int(record.total), record.current_best
        if record.metric_name is not None:
            rows[-1].metrics[record.metric_name] = record.metric_value
            names.add(record.metric_name)
    _label(session, rows, current_best)
    if not rows:
        # Past the last page (or nothing matches): the window count came with no row.
        total = int(session.scalar(select(func.count()).select_from(Model).where(*conditions)) or 0)
        current_best = session.scalar(select(Settings.current_model_id).where(Settings.id == 1))
    if by_metric and sort not in names:
        known = session.scalar(select(literal(1)).select_from(ModelMetric).where(ModelMetric.name == sort).limit(1))
        if known is None:
            raise InvalidArgumentError(f"unknown sort {sort!r}: no model has this metric; use one of "
                                       f"{list(SORT_COLUMNS)} or a recorded metric name")
        names.add(sort)
    return LeaderboardPage(rows=rows, total=total, page=page, per_page=per_page, sort=sort, ascending=ascending,
                           current_best=current_best, metric_names=sorted(names))


def _label(session: Session, rows: list[LeaderboardRow], current_best: str | None) -> None:
    """Fill the page's rows' aliases and tags (two statements restricted to the page's ids)."""
    if not rows:
        return
    by_id = {row.model_id: row for row in rows}
    if current_best in by_id:
        by_id[current_best].aliases.append(CURRENT_BEST_ALIAS)
    for model_id, name in session.execute(select(Alias.model_id, Alias.name).where(Alias.model_id.in_(list(by_id)))
                                          .order_by(Alias.name)):
        by_id[model_id].aliases.append(name)
    for model_id, found in tags_of(session, "model", list(by_id)).items():
        by_id[model_id].tags.update(found)


def metric_names(context: RegistryContext) -> list[str]:
    """Every metric name recorded for any model, alphabetical."""
    return context.read(lambda s: list(s.scalars(select(ModelMetric.name).distinct().order_by(ModelMetric.name))))


def model_types(context: RegistryContext) -> list[str]:
    """Every model type with at least one registered model, alphabetical."""
    return context.read(lambda s: list(s.scalars(select(Model.model_type).distinct().order_by(Model.model_type))))


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SERIES_POINTS:
        raise InvalidArgumentError(f"limit must be an integer between 1 and {MAX_SERIES_POINTS:,}, got {limit!r}")
    return limit


def metric_series(context: RegistryContext, metric: str, model_type: str | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    """One metric over registration time: the newest ``limit`` models that have it, oldest first.

    Returns:
        Dicts ``model_id, model_type, created_at, value, status, is_current``.
    """
    validate_metric_name(metric)
    if model_type is not None:
        validate_identifier(model_type, "model_type")
    limit = _limit(limit)

    def work(session: Session) -> list[dict[str, Any]]:
        current = select(Settings.current_model_id).where(Settings.id == 1).scalar_subquery()
        statement = (
            select(Model.model_id, Model.model_type, Model.created_at, Model.status, ModelMetric.value,
                   current.label("current_best"))
            .join(ModelMetric, and_(ModelMetric.model_id == Model.model_id, ModelMetric.name == metric))
            .order_by(Model.created_at.desc(), Model.model_id.desc()).limit(limit)
        )
        if model_type is not None:
            statement = statement.where(Model.model_type == model_type)
        rows = session.connection().execute(statement).all()
        return [
            {"model_id": r.model_id, "model_type": r.model_type, "created_at": iso(r.created_at), "value": r.value,
             "status": r.status, "is_current": r.model_id == r.current_best}
            for r in reversed(rows)
        ]

    return context.read(work)


def metric_pairs(context: RegistryContext, x_metric: str, y_metric: str, model_type: str | None = None,
                 limit: int = 1000) -> list[dict[str, Any]]:
    """Two metrics per model (the newest ``limit`` models having both), for a scatter plot.

    Returns:
        Dicts ``model_id, model_type, x, y, status, is_current``.
    """
    validate_metric_name(x_metric)
    validate_metric_name(y_metric)
    if model_type is not None:
        validate_identifier(model_type, "model_type")
    limit = _limit(limit)

    def work(session: Session) -> list[dict[str, Any]]:
        x, y = aliased(ModelMetric), aliased(ModelMetric)
        current = select(Settings.current_model_id).where(Settings.id == 1).scalar_subquery()
        statement = (
            select(Model.model_id, Model.model_type, Model.status, x.value.label("x"), y.value.label("y"),
                   current.label("current_best"))
            .join(x, and_(x.model_id == Model.model_id, x.name == x_metric))
            .join(y, and_(y.model_id == Model.model_id, y.name == y_metric))
            .order_by(Model.created_at.desc(), Model.model_id.desc()).limit(limit)
        )
        if model_type is not None:
            statement = statement.where(Model.model_type == model_type)
        rows = session.connection().execute(statement).all()
        return [
            {"model_id": r.model_id, "model_type": r.model_type, "x": r.x, "y": r.y, "status": r.status,
             "is_current": r.model_id == r.current_best}
            for r in rows
        ]

    return context.read(work)
