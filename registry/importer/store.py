"""Writing parsed imports into the database, and fingerprinting the files they name.

Every writer here runs inside the caller's write transaction (``context.mutate``):
:func:`clear_registry` empties the registry's tables, :func:`insert_parsed` inserts a
:class:`~registry.importer.parse.ParsedRegistry` and sets the pointers,
:func:`is_registry_empty` and :func:`find_conflicts` decide between a fresh import, a
merge and a refusal. :func:`fingerprint_artifacts` runs before the transaction (hashing
takes a while).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ..artifacts import REQUIRED_MODEL_FILES, fingerprint, model_files
from ..defaults import DEFAULT_METRIC
from ..embeddings_files import inspect_embeddings_folder
from ..errors import InvalidArtifactsError
from ..models import (
    ABTest,
    ArtifactFile,
    AuditEvent,
    BertEmbedding,
    EmbeddingLink,
    Model,
    ModelMetric,
    Selection,
    Settings,
    utcnow,
)
from ..settings_access import update_settings
from .parse import ParsedRegistry

if TYPE_CHECKING:
    from ..context import RegistryContext


def fingerprint_artifacts(parsed: ParsedRegistry, context: RegistryContext) -> None:
    """Record size and sha256 of the files of every model/embeddings folder that exists.

    Runs before the import transaction (hashing can take a while). Missing folders
    are fine: the original registry never checked its paths.
    """
    parsed.artifact_files.clear()
    for row in parsed.models:
        folder = context.resolve(row["path"])
        if not folder.is_dir():
            continue
        if row["model_type"] not in REQUIRED_MODEL_FILES:
            parsed.warn(f"model {row['model_id']}: unknown model type {row['model_type']!r}; its files are not fingerprinted")
            continue
        for name in model_files(folder, row["model_type"]):
            file_path = folder / name
            if file_path.is_file():
                try:
                    p = fingerprint(file_path, within=folder)
                except InvalidArtifactsError as exc:  # e.g. a symlink out of the folder: the loader refuses it too
                    parsed.warn(f"model {row['model_id']}: {exc}; the file is not fingerprinted")
                    continue
                parsed.artifact_files.append(
                    {"model_id": row["model_id"], "file_name": p.file_name, "size_bytes": p.size_bytes,
                     "sha256": p.sha256, "mtime_ns": p.mtime_ns}
                )
    if parsed.embeddings:
        for row in parsed.embeddings:
            folder = context.resolve(row["path"])
            embeddings_file, _, problems = inspect_embeddings_folder(folder)
            if embeddings_file is not None and not problems:
                p = fingerprint(embeddings_file, within=folder)
                row.update(file_name=p.file_name, size_bytes=p.size_bytes, sha256=p.sha256)


# --------------------------------------------------------------------------- writing


def clear_registry(session: Session, *, audit_events: bool = False) -> None:
    """Delete every model, embedding, link, selection and A/B test (and audit rows when asked).

    Runs inside the caller's write transaction; the settings row is kept with its
    pointers cleared.
    """
    update_settings(session, current_model_id=None, current_selection_id=None, current_embeddings_version=None)
    for table in (EmbeddingLink, ModelMetric, ArtifactFile, ABTest, Selection, Model, BertEmbedding):
        session.execute(delete(table))
    if audit_events:
        session.execute(delete(AuditEvent))


def is_registry_empty(session: Session, *, audit_events: bool = False) -> bool:
    """True when the registry holds no model and no embeddings (and no audit row, when asked)."""
    tables = [Model, BertEmbedding] + ([AuditEvent] if audit_events else [])
    return all(session.scalar(select(func.count()).select_from(table)) == 0 for table in tables)


def find_conflicts(session: Session, parsed: ParsedRegistry) -> list[str]:
    """Ids of the parsed rows that already exist in the registry."""
    conflicts: list[str] = []
    checks = (
        (Model.model_id, [row["model_id"] for row in parsed.models], "model"),
        (BertEmbedding.version, [row["version"] for row in parsed.embeddings], "embeddings"),
        (ABTest.test_id, [row["test_id"] for row in parsed.ab_tests], "A/B test"),
    )
    for column, ids, label in checks:
        for start in range(0, len(ids), 500):
            found = session.scalars(select(column).where(column.in_(ids[start:start + 500])))
            conflicts.extend(f"{label} {value}" for value in found)
    return conflicts


def insert_parsed(session: Session, parsed: ParsedRegistry, *, merge: bool = False) -> dict[str, str | None]:
    """Insert the parsed rows and set the pointers, inside the caller's write transaction.

    With ``merge`` the registry's own current best, current embeddings, running
    A/B test, selection criteria and extra keys win over the file's (the file's
    are applied only where the registry has none; skipped ones become warnings).

    Returns:
        The pointers applied from the file: ``current_best``, ``current_embeddings``.
    """
    settings = session.get(Settings, 1)
    assert settings is not None
    tests = parsed.ab_tests
    if merge and session.scalar(select(func.count()).select_from(ABTest).where(ABTest.status == "running")):
        running = [t for t in tests if t["status"] == "running"]
        for test in running:
            parsed.warn(f"A/B test {test['test_id']} imported as stopped: the registry already runs a test")
        tests = [dict(t, status="stopped", end_time=t["end_time"] or utcnow()) if t in running else t for t in tests]
    if parsed.models:
        session.execute(insert(Model), parsed.models)
    if parsed.embeddings:
        session.execute(insert(BertEmbedding), parsed.embeddings)
    if parsed.metrics:
        session.execute(insert(ModelMetric), parsed.metrics)
    if parsed.artifact_files:
        session.execute(insert(ArtifactFile), parsed.artifact_files)
    if parsed.links:
        # Distinct, increasing link times keep the exported linked_models order.
        start = utcnow()
        session.execute(
            insert(EmbeddingLink),
            [dict(link, linked_at=start + timedelta(microseconds=i)) for i, link in enumerate(parsed.links)],
        )
    if tests:
        session.execute(insert(ABTest), tests)
    if merge:
        settings.extra = {**(parsed.settings_extra or {}), **(settings.extra or {})} or None
    else:
        settings.selection_criteria = parsed.selection_criteria or DEFAULT_METRIC
        settings.extra = parsed.settings_extra
    applied: dict[str, str | None] = {"current_best": None, "current_embeddings": None}
    if parsed.current_embeddings is not None:
        if merge and settings.current_embeddings_version is not None:
            parsed.warn(f"current embeddings {parsed.current_embeddings} not applied: the registry keeps "
                        f"{settings.current_embeddings_version}")
        else:
            settings.current_embeddings_version = applied["current_embeddings"] = parsed.current_embeddings
    best = parsed.current_best
    if best is not None and merge and settings.current_model_id is not None:
        parsed.warn(f"current best {best['model_id']} not applied: the registry keeps {settings.current_model_id}")
    elif best is not None:
        selection = Selection(
            model_id=best["model_id"], metric=best["metric"], value=best["value"],
            previous_model_id=settings.current_model_id, selected_at=best["selected_at"] or utcnow(),
            selected_by=best["selected_by"], reason="imported",
        )
        session.add(selection)
        session.flush()
        settings.current_model_id = applied["current_best"] = best["model_id"]
        settings.current_selection_id = selection.id
    session.flush()
    return applied
