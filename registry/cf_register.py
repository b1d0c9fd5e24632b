"""Registration, the part of :class:`~registry.cf_registry.ModelRegistry` that records a model
folder: validation, fingerprints, uploads to an artifact store, automatic version ids.

A mixin, like :mod:`registry.admin_facade`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from . import audit, ids, selection
from .artifacts import FileFingerprint, fingerprint, hashed_here, model_files, required_files, user_eval_file
from .artifacts import validate_artifacts as _validate_artifacts
from .errors import InvalidArgumentError, InvalidArtifactsError, ModelExistsError, ModelNotFoundError
from .facade_base import RegistryFacade
from .models import ArtifactFile, BertEmbedding, EmbeddingLink, Model, ModelMetric, table, utcnow
from .storage import is_uri
from .storage.upload import inspect_remote_folder, upload_files
from .utils.git import get_git_commit as _detect_git_commit
from .utils.versioning import generate_version_id as _generate_version_id
from .validated_folders import check_model_folder_remembered
from .validation import (
    ID_MAX_LENGTH,
    MODEL_TYPE_MAX_LENGTH,
    json_payload,
    optional_text,
    path_text,
    validate_flag,
    validate_identifier,
    validate_metrics,
)

# The name ModelRegistry has always logged under (this code was in registry/cf_registry.py).
logger = logging.getLogger("registry.cf_registry")

GIT_CACHE_SECONDS = 10.0


class RegistryRegistration(RegistryFacade):
    """Registering model folders (mixed into ``ModelRegistry``)."""

    _git_cache: tuple[float, str | None] | None

    generate_version_id = staticmethod(_generate_version_id)

    @staticmethod
    def generate_model_id(model_type: str, version: str) -> str:
        """``f"{model_type}_{version}"``."""
        return f"{model_type}_{version}"

    @staticmethod
    def get_git_commit() -> str | None:
        """The working directory's git commit (None outside a repository)."""
        return _detect_git_commit()

    def validate_artifacts(self, artifacts_path: str | os.PathLike[str], model_type: str) -> tuple[bool, list[str]]:
        """Check a model folder without registering it: ``(ok, problems)``."""
        return _validate_artifacts(self._ctx.resolve(str(artifacts_path)), model_type)

    def _detected_git_commit(self) -> str | None:
        now = time.monotonic()
        if self._git_cache is None or now - self._git_cache[0] > GIT_CACHE_SECONDS:
            self._git_cache = (now, _detect_git_commit(self._ctx.root))
        return self._git_cache[1]

    # ------------------------------------------------------------------ registration

    def register_model(
        self,
        artifacts_path: str | os.PathLike[str],
        model_type: str,
        hyperparameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        training_info: dict[str, Any] | None = None,
        data_version: str | None = None,
        git_commit: str | None = None,
        baseline_comparison: dict[str, Any] | None = None,
        bert_integration: dict[str, Any] | None = None,
        version: str | None = None,
        overwrite: bool = False,
    ) -> str:
        """Register the model in ``artifacts_path``; returns its ``model_id``.

        The folder is validated (required files, ``.npy`` headers, shapes, JSON,
        metadata and id maps) and every file's size and sha256 recorded. Without
        ``version`` the id is ``{type}_v_YYYYMMDD_HHMMSS`` (UTC), suffixed ``_2``,
        ``_3``... when taken. An explicit existing version returns its id when path
        and checksums are identical (idempotent re-run), is replaced in one
        transaction with ``overwrite=True``, and raises otherwise.

        Raises:
            InvalidArgumentError: unknown model type, bad ids, metrics or payloads.
            InvalidArtifactsError: missing or invalid files.
            ModelExistsError: the explicit version exists with other content.
            ModelNotFoundError: ``bert_integration`` names an unknown embeddings version.
        """
        validate_identifier(model_type, "model_type", MODEL_TYPE_MAX_LENGTH)
        required_files(model_type)
        if version is not None:
            validate_identifier(version, "version")
            if len(self.generate_model_id(model_type, version)) > ID_MAX_LENGTH:
                raise InvalidArgumentError(
                    f"model id {model_type}_{version} is longer than {ID_MAX_LENGTH} characters; use a shorter version"
                )
        metric_values = validate_metrics(metrics)
        hyperparameters = json_payload(hyperparameters, "hyperparameters")
        training_info = json_payload(training_info, "training_info")
        baseline_comparison = json_payload(baseline_comparison, "baseline_comparison", allow_none=True) or None
        bert_integration = json_payload(bert_integration, "bert_integration", allow_none=True) or None
        data_version = optional_text(data_version, "data_version") or "unknown"
        git_commit = optional_text(git_commit, "git_commit", 64) or self._detected_git_commit()
        embeddings_version = (bert_integration or {}).get("embeddings_version")
        if embeddings_version is not None:
            validate_identifier(embeddings_version, "bert_integration.embeddings_version")
        overwrite = validate_flag(overwrite, "overwrite")
        stored_path = path_text(artifacts_path, "artifacts_path")
        uris: dict[str, str] = {}
        artifact_store = self._ctx.artifact_store
        if is_uri(stored_path):
            # Registered in place: validated from ranged reads, hashed by streaming; nothing is copied.
            stored_path = stored_path.rstrip("/")
            prints, uris = inspect_remote_folder(stored_path, model_type)
        else:
            folder = self._ctx.resolve(stored_path)
            _, problems = check_model_folder_remembered(folder, model_type)
            if not problems and (folder / user_eval_file(model_type)).is_file():
                from .user_eval import mean_mismatches

                problems = mean_mismatches(folder, model_type, metric_values)
            if problems:
                raise InvalidArtifactsError(f"Invalid artifacts in {str(folder)!r} for model type {model_type!r}: " + "; ".join(problems))
            names = model_files(folder, model_type)
            # Files this process hashed unchanged need no lookup of the recorded fingerprints.
            remembered = [hashed_here(folder / name, within=folder) for name in names]
            if all(remembered):
                prints = [p for p in remembered if p is not None]
            else:
                known = self._ctx.read(lambda session: _known_fingerprints(session, stored_path))
                prints = [fingerprint(folder / name, known, within=folder) for name in names]
            if artifact_store is not None:
                # Uploaded before anything is recorded: a failed upload leaves no row behind.
                uris = upload_files(artifact_store, folder, prints)
        source_path = stored_path

        def work(session: Session) -> str:
            if embeddings_version is not None and session.get(BertEmbedding, embeddings_version) is None:
                raise ModelNotFoundError(
                    f"bert_integration names embeddings version {embeddings_version!r}, which is not registered"
                )
            fields: dict[str, Any] = {
                "model_type": model_type,
                "status": "active",
                "data_version": data_version,
                "git_commit": git_commit,
                "hyperparameters": hyperparameters,
                "training_info": training_info,
                "baseline_comparison": baseline_comparison,
                "bert_integration": bert_integration,
            }
            insert_model = _insert_model_if_free(session.get_bind().dialect.name)

            def stored_path_of(model_id: str) -> str:
                # Uploaded into the store: the model's address there (its files are content-addressed objects).
                return artifact_store.model_uri(model_id) if uris and not is_uri(source_path) else source_path

            def insert_if_free(model_id: str, model_version: str) -> bool:
                row = {"model_id": model_id, "version": model_version, "path": stored_path_of(model_id), **fields}
                # A DML statement's result is a CursorResult: its row count is 0 when the id was taken.
                return cast(CursorResult[Any], session.execute(insert_model, row)).rowcount == 1

            existing: Model | None = None
            if version is None:
                base = _generate_version_id("v")
                model_id, _ = ids.insert_first_free(
                    session, Model.model_id, f"{model_type}_{base}",
                    lambda candidate, number: insert_if_free(candidate, base if number == 1 else f"{base}_{number}"))
            else:
                model_id = self.generate_model_id(model_type, version)
                if not insert_if_free(model_id, version):
                    # Rare (a re-registration): only now the row as an object, to compare or replace it.
                    existing = session.get(Model, model_id)
            stored_path = stored_path_of(model_id)
            if existing is not None:
                if not overwrite:
                    if _same_content(session, existing, stored_path, prints):
                        logger.info("model %s is already registered with identical files", model_id)
                        return model_id
                    raise ModelExistsError(
                        f"Model {model_id!r} already exists with a different path or files; "
                        "register another version or pass overwrite=True"
                    )
                session.execute(delete(ModelMetric).where(ModelMetric.model_id == model_id))
                session.execute(delete(ArtifactFile).where(ArtifactFile.model_id == model_id))
                # Replaced in place: the row may be the current best, which a restricting
                # foreign key (settings.current_model_id) keeps from being deleted.
                for name, value in {**fields, "version": version, "path": stored_path,
                                    "created_at": utcnow(), "extra": None}.items():
                    setattr(existing, name, value)
                session.flush()
            if metric_values:
                session.execute(_INSERT_METRICS, [{"model_id": model_id, "name": n, "value": v}
                                                  for n, v in metric_values.items()])
            if prints:
                session.execute(_INSERT_FILES, [
                    {"model_id": model_id, "file_name": p.file_name, "size_bytes": p.size_bytes, "sha256": p.sha256,
                     "mtime_ns": p.mtime_ns, "uri": uris.get(p.file_name)}
                    for p in prints
                ])
            # Links made with link_to_model survive an overwrite; bert_integration adds its own.
            if embeddings_version is not None and session.get(EmbeddingLink, (embeddings_version, model_id)) is None:
                session.add(EmbeddingLink(embedding_version=embeddings_version, model_id=model_id))
            settings = selection.settings_view(session)
            criteria = settings.selection_criteria
            value = metric_values.get(criteria)
            summary = f"{criteria}={value if value is not None else 'N/A'}"
            if overwrite and version is not None and settings.current_model_id == model_id:
                selection.refresh_current_selection(session, model_id, metric_values)
                summary += " overwrite=True"
            details = {"path": stored_path, "model_type": model_type, "metrics": metric_values, "overwrite": overwrite}
            if stored_path != source_path:
                details["uploaded_from"] = source_path
            audit.record(session, "REGISTER", model_id, summary, details)
            return model_id

        return self._ctx.mutate(work)


# ---------------------------------------------------------------------- transaction helpers

_INSERT_METRICS = insert(table(ModelMetric))
_INSERT_FILES = insert(table(ArtifactFile))


def _known_fingerprints(session: Session, stored_path: str) -> dict[str, FileFingerprint]:
    """Fingerprints recorded for the newest model registered from the same path."""
    latest = (
        select(Model.model_id).where(Model.path == stored_path)
        .order_by(Model.created_at.desc()).limit(1).scalar_subquery()
    )
    rows = session.execute(
        select(ArtifactFile.file_name, ArtifactFile.size_bytes, ArtifactFile.sha256, ArtifactFile.mtime_ns)
        .where(ArtifactFile.model_id == latest)
    )
    return {name: FileFingerprint(name, size, sha, mtime or -1) for name, size, sha, mtime in rows}


@functools.cache
def _insert_model_if_free(dialect: str) -> Executable:
    """``INSERT INTO models ... ON CONFLICT (model_id) DO NOTHING`` for the dialect, built once.

    Its row count says whether the id was free: one statement where a lookup and an insert
    were two. SQLite and PostgreSQL both support the clause; their dialect modules are already
    loaded by the engine.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement: Executable = postgresql_insert(table(Model)).on_conflict_do_nothing(index_elements=["model_id"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table(Model)).on_conflict_do_nothing(index_elements=["model_id"])
    # preserve_rowcount: SQLAlchemy keeps an INSERT's row count only when asked (psycopg's is lost otherwise).
    return statement.execution_options(preserve_rowcount=True)


def _same_content(session: Session, model: Model, stored_path: str, prints: list[FileFingerprint]) -> bool:
    if model.path != stored_path:
        return False
    recorded = {row.file_name: row.sha256 for row in session.scalars(select(ArtifactFile).where(ArtifactFile.model_id == model.model_id))}
    return recorded == {p.file_name: p.sha256 for p in prints}
