"""The settings row inside one write transaction: the values the generation bump returned, the
ORM object a writer loads, and the row itself stay in step when the pointer moves (Core updates)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry import ModelRegistry, audit, selection
from registry.importer.store import clear_registry
from registry.models import Settings
from registry.transactions import bumped_settings


def two_models(registry: ModelRegistry, model_dir: Any) -> tuple[str, str]:
    a = registry.register_model(model_dir("als/a", seed=1), "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    b = registry.register_model(model_dir("als/b", seed=2), "als", {}, {"ndcg@10": 0.2}, {}, version="b")
    return a, b


def test_two_moves_in_one_transaction_chain_their_history(registry: ModelRegistry, model_dir: Any) -> None:
    a, b = two_models(registry, model_dir)
    seen: list[Any] = []

    def work(session: Session) -> None:
        selection.set_current(session, a, None, None, selection.MANUAL, "first")
        seen.append(selection.settings_view(session).current_model_id)
        selection.set_current(session, b, None, None, selection.MANUAL, "second")
        seen.append(bumped_settings(session).current_model_id)  # type: ignore[union-attr]
        audit.record(session, "PROMOTE", b, "test")

    registry.context.mutate(work)

    assert seen == [a, b]
    assert registry.get_current_best()["model_id"] == b  # type: ignore[index]
    rows = registry.get_selection_history()
    moves = {row["model_id"]: row["previous_model_id"] for row in rows}
    assert moves[a] is None and moves[b] == a  # the second move saw the first one's pointer


def test_a_loaded_settings_object_follows_a_move(registry: ModelRegistry, model_dir: Any) -> None:
    a, b = two_models(registry, model_dir)
    registry.promote_model(a)
    seen: list[Any] = []

    def work(session: Session) -> None:
        settings = selection.settings_row(session)  # a writer holding the ORM object
        assert settings.current_model_id == a
        selection.set_current(session, b, "ndcg@10", 0.2, selection.AUTO, None)
        seen.append((settings.current_model_id, settings.selection_criteria, settings.current_selection_id))
        audit.record(session, "SELECT_BEST", b, "test")

    registry.context.mutate(work)

    model_id, criteria, selection_id = seen[0]
    assert (model_id, criteria) == (b, "ndcg@10")
    newest = registry.get_selection_history()[0]
    assert newest["model_id"] == b and newest["id"] == selection_id


def test_a_settings_object_loaded_by_any_code_follows_a_move(registry: ModelRegistry, model_dir: Any) -> None:
    a, b = two_models(registry, model_dir)
    registry.promote_model(a)
    seen: list[Any] = []

    def work(session: Session) -> None:
        held = session.get(Settings, 1)  # not through settings_row: the identity map's object
        selection.set_current(session, b, None, None, selection.MANUAL, None)
        seen.extend([held.current_model_id, selection.settings_view(session).current_model_id,  # type: ignore[union-attr]
                     selection.settings_row(session).current_model_id])
        audit.record(session, "PROMOTE", b, "test")

    registry.context.mutate(work)
    assert seen == [b, b, b]


def test_clearing_the_registry_clears_the_pointers_the_transaction_reads(registry: ModelRegistry, model_dir: Any) -> None:
    a, _ = two_models(registry, model_dir)
    registry.promote_model(a)
    seen: list[Any] = []

    def work(session: Session) -> None:
        clear_registry(session)
        seen.append(selection.settings_view(session).current_model_id)
        audit.record(session, "IMPORT", "registry", "test")

    registry.context.mutate(work)
    assert seen == [None]
    assert registry.get_current_best() is None
