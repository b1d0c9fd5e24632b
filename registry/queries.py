"""Session queries shared by feature modules: A/B test lookups, metrics per model, links per embeddings version."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .defaults import AB_ARMS
from .errors import ABTestNotFoundError
from .models import ABTest, EmbeddingLink, ModelMetric, table

ARMS = AB_ARMS


def running_test(session: Session) -> ABTest | None:
    """The running A/B test row, if any (at most one exists)."""
    return session.scalars(select(ABTest).where(ABTest.status == "running")).first()


def require_test(session: Session, test_id: str | None) -> ABTest:
    """The test ``test_id``, or the running one when None; ``ModelNotFoundError`` when there is none."""
    if test_id is None:
        test = running_test(session)
        if test is None:
            raise ABTestNotFoundError("no A/B test is running; pass the test_id of a stopped test or start one")
        return test
    test = session.get(ABTest, test_id)
    if test is None:
        raise ABTestNotFoundError(f"A/B test {test_id!r} not found", hint="list_ab_tests() shows the registry's tests",
                                 cli_hint="`cfreg ab status --all` shows the registry's tests")
    return test


def metrics_by_model(session: Session, model_ids: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{model_id: {metric: value}}`` in one query (all models when ``model_ids`` is None)."""
    metrics = table(ModelMetric).c  # Core columns: this runs on every read path
    statement = select(metrics.model_id, metrics.name, metrics.value).order_by(metrics.model_id, metrics.name)
    if model_ids is not None:
        statement = statement.where(metrics.model_id.in_(model_ids))
    grouped: dict[str, dict[str, float]] = {}
    for model_id, name, value in session.execute(statement):
        grouped.setdefault(model_id, {})[name] = value
    return grouped


def links_by_embedding(session: Session) -> dict[str, list[str]]:
    """``{embeddings_version: [model_id, ...]}`` in link order, in one query."""
    grouped: dict[str, list[str]] = {}
    statement = select(EmbeddingLink.embedding_version, EmbeddingLink.model_id).order_by(EmbeddingLink.linked_at)
    for version, model_id in session.execute(statement):
        grouped.setdefault(version, []).append(model_id)
    return grouped
