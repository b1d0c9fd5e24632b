"""Every mutating operation commits its change and its audit row together, or neither.

A failure is injected into the audit write (``registry.audit.record`` adds the row,
flushes it, then raises). Whatever the operation had done before in its transaction
must roll back with it: a full snapshot (every table, the generation, the hash of every
file under the test folder: registry.json, the audit log, the artifact folders) is the
same before and after. Then the same operation runs without the failure and must bump the
generation and write a new audit row, which proves the case exercises a real mutation.

An implementation that commits the change before writing its audit row (or in a
separate transaction) fails here. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry import BERTEmbeddingsRegistry, ModelRegistry, audit
from registry.legacy import import_registry_json
from registry.maintenance import cleanup_old_models
from registry.utils import backup_registry, cleanup_old_artifacts, restore_registry
from registry_snapshot import snapshot

DATA = Path(__file__).parent / "data"


class InjectedAuditFailure(RuntimeError):
    """The audit write failed (raised by the patched ``audit.record``)."""


@dataclass
class World:
    """A registry with a current best ``a``, a better unselected ``b``, and current embeddings ``e1``."""

    registry: ModelRegistry
    bert: BERTEmbeddingsRegistry
    model_dir: Callable[..., str]
    embeddings_dir: Callable[..., str]
    tmp_path: Path
    database_url: str
    a: str = ""
    b: str = ""
    e1: str = ""

    def add_model(self, version: str, ndcg: float, **kwargs: Any) -> str:
        return self.registry.register_model(self.model_dir(f"als/{version}", seed=len(version)), "als",
                                            version=version, metrics={"ndcg@10": ndcg}, **kwargs)

    def add_embeddings(self, version: str) -> str:
        return self.bert.register_embeddings(self.embeddings_dir(f"bert/{version}"), "bert-base", num_items=25,
                                             embedding_dim=16, version=version)


@pytest.fixture
def world(registry: ModelRegistry, registry_path: Path, database_url: str, tmp_path: Path, model_dir,  # type: ignore[no-untyped-def]
          embeddings_dir) -> World:
    bert = BERTEmbeddingsRegistry(registry_path.with_name("bert_registry.json"), database_url=database_url, root=tmp_path)
    world = World(registry, bert, model_dir, embeddings_dir, tmp_path, database_url)
    world.a = world.add_model("v1", 0.2)
    registry.select_best_model("ndcg@10")
    world.b = world.add_model("v2", 0.3)
    world.e1 = world.add_embeddings("e1")
    return world


# Each case prepares what it needs (before the snapshot) and returns the mutation to run.
Case = Callable[[World], Callable[[], Any]]


def register_new(w: World) -> Callable[[], Any]:
    path = w.model_dir("als/v3", seed=3)
    return lambda: w.registry.register_model(path, "als", version="v3", metrics={"ndcg@10": 0.1})


def register_overwrite(w: World) -> Callable[[], Any]:
    path = w.registry.get_model(w.b)["path"]
    return lambda: w.registry.register_model(path, "als", version="v2", metrics={"ndcg@10": 0.35}, overwrite=True)


def register_overwrite_current_best(w: World) -> Callable[[], Any]:
    path = w.registry.get_model(w.a)["path"]
    return lambda: w.registry.register_model(path, "als", version="v1", metrics={"ndcg@10": 0.25}, overwrite=True)


def register_linked_to_embeddings(w: World) -> Callable[[], Any]:
    path = w.model_dir("bert_als/v1", model_type="bert_als", seed=5)
    return lambda: w.registry.register_model(path, "bert_als", version="v1", metrics={"ndcg@10": 0.1},
                                             bert_integration={"embeddings_version": w.e1})


def rollback(w: World) -> Callable[[], Any]:
    w.registry.select_best_model("ndcg@10")  # b becomes current: there is something to roll back
    return lambda: w.registry.rollback()


def bert_set_current(w: World) -> Callable[[], Any]:
    w.add_embeddings("e2")
    return lambda: w.bert.set_current_best("e2")


def bert_unlink(w: World) -> Callable[[], Any]:
    w.bert.link_to_model(w.e1, w.b)
    return lambda: w.bert.unlink_model(w.e1, w.b)


def bert_delete(w: World) -> Callable[[], Any]:
    w.add_embeddings("e2")
    return lambda: w.bert.delete_embeddings("e2", delete_files=True)


def ab_running(w: World) -> str:
    return w.registry.start_ab_test(w.a, w.b, traffic_split=0.1)["test_id"]


def bert_register(w: World) -> Callable[[], Any]:
    path = w.embeddings_dir("bert/e2")
    return lambda: w.bert.register_embeddings(path, "bert-base", num_items=25, embedding_dim=16, version="e2")


def ab_split(w: World) -> Callable[[], Any]:
    test_id = ab_running(w)
    return lambda: w.registry.update_traffic_split(test_id, 0.5)


def ab_stop(w: World) -> Callable[[], Any]:
    test_id = ab_running(w)
    return lambda: w.registry.stop_ab_test(test_id, promote="treatment")


def ab_rollback(w: World) -> Callable[[], Any]:
    test_id = ab_running(w)
    return lambda: w.registry.rollback_ab_test(test_id)


def restore(w: World) -> Callable[[], Any]:
    backup = backup_registry(w.registry.registry_path, database_url=w.database_url)
    w.add_model("v3", 0.1)
    return lambda: restore_registry(backup, w.registry.registry_path, create_current_backup=False,
                                    database_url=w.database_url)


def cleanup_artifacts(w: World) -> Callable[[], Any]:
    w.add_model("v3", 0.1)  # newest; a is the current best: b's folder is the one to go
    return lambda: cleanup_old_artifacts(w.tmp_path / "artifacts" / "cf", keep_count=1, dry_run=False,
                                         database_url=w.database_url)


def cleanup_models(w: World) -> Callable[[], Any]:
    w.add_model("v3", 0.1)
    return lambda: cleanup_old_models(w.registry, keep_last=1, archive_old=True)


CASES: dict[str, Case] = {
    "cf register": register_new,
    "cf register overwrite": register_overwrite,
    "cf register overwrite of the current best": register_overwrite_current_best,
    "cf register linked to embeddings": register_linked_to_embeddings,
    "cf update status": lambda w: lambda: w.registry.update_model_status(w.b, "failed"),
    "cf archive": lambda w: lambda: w.registry.archive_model(w.b),
    "cf delete": lambda w: lambda: w.registry.delete_model(w.b),
    "cf delete with files": lambda w: lambda: w.registry.delete_model(w.b, delete_files=True),
    "cf select best": lambda w: lambda: w.registry.select_best_model("ndcg@10"),
    "cf promote": lambda w: lambda: w.registry.promote_model(w.b, reason="manual"),
    "cf rollback": rollback,
    "bert register": bert_register,
    "bert set current": bert_set_current,
    "bert link": lambda w: lambda: w.bert.link_to_model(w.e1, w.b),
    "bert unlink": bert_unlink,
    "bert delete": bert_delete,
    "ab start": lambda w: lambda: w.registry.start_ab_test(w.a, w.b, traffic_split=0.1),
    "ab split": ab_split,
    "ab stop": ab_stop,
    "ab rollback": ab_rollback,
    "import registry.json": lambda w: lambda: import_registry_json(w.registry.context, DATA / "legacy_registry.json"),
    "restore": restore,
    "cleanup old artifacts": cleanup_artifacts,
    "cleanup old models": cleanup_models,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failing_audit_write_leaves_everything_unchanged(case: str, world: World,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    mutation = CASES[case](world)
    before = snapshot(world.registry, world.tmp_path)
    real_record = audit.record

    def failing_record(session, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_record(session, *args, **kwargs)
        session.flush()  # the change and the audit row are in the database's transaction now
        raise InjectedAuditFailure(f"audit write failed during {case}")

    with monkeypatch.context() as patch:
        patch.setattr(audit, "record", failing_record)
        with pytest.raises(InjectedAuditFailure):
            mutation()
    assert snapshot(world.registry, world.tmp_path) == before

    # The same call without the failure is a real, audited change.
    mutation()
    after = snapshot(world.registry, world.tmp_path)
    assert after["generation"] > before["generation"]
    # new audit rows (a full restore also brings back the backup's own rows, so compare the rows)
    assert after["tables"]["audit_events"][-1] not in before["tables"]["audit_events"]
