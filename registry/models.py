"""ORM tables: the registry's whole relational schema on one page.

Readable by someone writing SQL: ``models`` holds one row per model version,
``model_metrics`` one row per (model, metric), ``selections`` the history of
current-best changes, ``settings`` the single row with the pointers and the
``generation`` counter that increases with every committed change.

Schema changes go through Alembic (``migrations/``) only; a test proves these
classes and the migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .defaults import AB_ARMS, AB_TEST_STATUSES, DEFAULT_METRIC, MODEL_STATUS, MODEL_STATUSES  # noqa: F401 - re-exported
from .timestamps import utcnow  # also imported from here by most modules
from .validation import ID_MAX_LENGTH, MODEL_TYPE_MAX_LENGTH

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Model ids are validated to ID_MAX_LENGTH; the columns keep some headroom.
ID_LENGTH = 160
VERSION_LENGTH = ID_MAX_LENGTH
CURRENT_BEST_ALIAS = "current_best"
TAG_KEY_LENGTH = ID_MAX_LENGTH
TAG_VALUE_LENGTH = 1024


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns timezone-aware UTC datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def table(entity: type[Base]) -> Table:
    """The Core table of a mapped class: statements on it skip the ORM layer (for the hot paths)."""
    return cast(Table, entity.__table__)


class Model(Base):
    """One registered model version (``model_id = f"{model_type}_{version}"``)."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(f"status IN {MODEL_STATUSES!r}", name="status_known"),
        Index("ix_models_type_status", "model_type", "status"),
        Index("ix_models_created_at", "created_at"),
        Index("ix_models_path_created_at", "path", "created_at"),
    )

    model_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    model_type: Mapped[str] = mapped_column(String(MODEL_TYPE_MAX_LENGTH))
    version: Mapped[str] = mapped_column(String(VERSION_LENGTH))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    data_version: Mapped[str] = mapped_column(String(256), default="unknown")
    git_commit: Mapped[str | None] = mapped_column(String(64))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    baseline_comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    bert_integration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Unknown keys of an imported legacy entry, written back on export.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"Model({self.model_id!r}, status={self.status!r})"


class ModelTag(Base):
    """A key/value tag on a model (``tags.team = 'search'`` in search filters)."""

    __tablename__ = "model_tags"
    __table_args__ = (Index("ix_model_tags_key_value", "key", "value"),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH))


class ModelMetric(Base):
    """One metric value of one model; indexed so SQL can rank models by any metric."""

    __tablename__ = "model_metrics"
    __table_args__ = (
        CheckConstraint("value > -1e308 AND value < 1e308", name="value_finite"),
        Index("ix_model_metrics_name_value", "name", "value"),
    )

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ArtifactFile(Base):
    """Size and sha256 of every file of a model, recorded at registration."""

    __tablename__ = "artifact_files"
    __table_args__ = (Index("ix_artifact_files_sha256", "sha256"),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    file_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Stat identity at hashing time: lets re-registration of unchanged files skip hashing.
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Where the bytes live when not under the model's local path: an object store URI
    # (content-addressed upload, or a file of a folder registered in place). NULL: local disk.
    uri: Mapped[str | None] = mapped_column(Text)


class Selection(Base):
    """History of current-best changes; ``settings.current_selection_id`` is the current one.

    ``model_id`` and ``previous_model_id`` are plain strings, not foreign keys, so the
    history survives deletion of old models (the current best itself cannot be deleted:
    ``settings.current_model_id`` is a restricting foreign key).
    """

    __tablename__ = "selections"
    __table_args__ = (Index("ix_selections_alias_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The alias this row moved: "current_best" for the current best, else a named alias.
    alias: Mapped[str] = mapped_column(String(ID_LENGTH), default=CURRENT_BEST_ALIAS, server_default=CURRENT_BEST_ALIAS)
    # None when the row records the deletion of a named alias.
    model_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    metric: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    previous_model_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    selected_at: Mapped[datetime] = mapped_column(default=utcnow)
    selected_by: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    # On a rollback row: the earlier selection whose state it restored (how far back it went).
    restored_selection_id: Mapped[int | None] = mapped_column(Integer)
    # Who moved the pointer (``user@host:pid``, or the web UI's identity); NULL on rows older than aliases.
    actor: Mapped[str | None] = mapped_column(String(128))


class Alias(Base):
    """A named pointer at one model (``champion_als``, ``challenger``); history lives in ``selections``.

    The current best is the alias ``current_best``; its pointer is ``settings.current_model_id``
    (kept there so the loader's change check stays one row read), so it has no row here.
    """

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.model_id", ondelete="RESTRICT"), index=True)
    selection_id: Mapped[int | None] = mapped_column(ForeignKey("selections.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BertEmbedding(Base):
    """One registered version of BERT item embeddings."""

    __tablename__ = "bert_embeddings"

    version: Mapped[str] = mapped_column(String(VERSION_LENGTH), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(256))
    num_items: Mapped[int] = mapped_column(Integer)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    data_version: Mapped[str] = mapped_column(String(256), default="unknown")
    git_commit: Mapped[str | None] = mapped_column(String(64))
    generation_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text_fields_used: Mapped[list[Any]] = mapped_column(default=list)
    file_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    # The object holding the file in the artifact store (NULL: ``path/file_name`` on the local disk).
    uri: Mapped[str | None] = mapped_column(Text)


class EmbeddingTag(Base):
    """A key/value tag on a BERT embeddings version."""

    __tablename__ = "embedding_tags"

    version: Mapped[str] = mapped_column(
        ForeignKey("bert_embeddings.version", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH))


class EmbeddingLink(Base):
    """A CF model built on (or served with) a BERT embeddings version."""

    __tablename__ = "embedding_links"

    embedding_version: Mapped[str] = mapped_column(
        ForeignKey("bert_embeddings.version", ondelete="RESTRICT"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class ABTest(Base):
    """An A/B test (canary) between two models; at most one is running at a time."""

    __tablename__ = "ab_tests"
    __table_args__ = (
        CheckConstraint("traffic_split >= 0 AND traffic_split <= 1", name="split_range"),
        CheckConstraint(f"status IN {AB_TEST_STATUSES!r}", name="status_known"),
        Index(
            "uq_ab_tests_one_running",
            "status",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    test_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    control_model: Mapped[str] = mapped_column(String(ID_LENGTH))
    treatment_model: Mapped[str] = mapped_column(String(ID_LENGTH))
    traffic_split: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="running")
    start_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime | None]
    promoted: Mapped[str | None] = mapped_column(String(16))
    # Smallest relative lift worth detecting (0.05 = +5%); None: the default of registry.ab_results.
    minimum_detectable_effect: Mapped[float | None] = mapped_column(Float)
    # The alias an arm follows (``@champion``); its ``*_model`` is then that alias's current target.
    control_alias: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    treatment_alias: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class ABOutcome(Base):
    """One batch of outcomes of one arm of an A/B test (counts, or sums for continuous metrics).

    ``(test_id, arm, batch_id)`` is unique, so a retried batch counts once.
    ``conversions`` is set for conversion metrics; ``value_sum`` and
    ``value_sum_squares`` (of the per-exposure values) for continuous ones.
    """

    __tablename__ = "ab_outcomes"
    __table_args__ = (
        CheckConstraint(f"arm IN {AB_ARMS!r}", name="arm_known"),
        CheckConstraint("exposures >= 0", name="exposures_non_negative"),
        CheckConstraint("conversions IS NULL OR (conversions >= 0 AND conversions <= exposures)", name="conversions_range"),
        CheckConstraint("value_sum_squares IS NULL OR value_sum_squares >= 0", name="sum_squares_non_negative"),
        UniqueConstraint("test_id", "arm", "batch_id", name="uq_ab_outcomes_batch"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("ab_tests.test_id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    exposures: Mapped[int] = mapped_column(BigInteger)
    conversions: Mapped[int | None] = mapped_column(BigInteger)
    value_sum: Mapped[float | None] = mapped_column(Float)
    value_sum_squares: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Append-only trail: one row per mutation, written in the mutation's transaction."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(128), default="")


class Settings(Base):
    """The registry's single state row (``id = 1``): pointers, root, generation counter."""

    __tablename__ = "settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    root: Mapped[str | None] = mapped_column(Text)
    current_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("models.model_id", ondelete="RESTRICT")
    )
    current_selection_id: Mapped[int | None] = mapped_column(
        ForeignKey("selections.id", ondelete="SET NULL")
    )
    current_embeddings_version: Mapped[str | None] = mapped_column(
        ForeignKey("bert_embeddings.version", ondelete="RESTRICT")
    )
    selection_criteria: Mapped[str] = mapped_column(String(64), default=DEFAULT_METRIC)
    registry_version: Mapped[str] = mapped_column(String(16), default="1.0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(default=utcnow)
    # Unknown top-level keys of an imported legacy registry.json, written back on export.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # URI of the artifact store (s3://bucket/prefix, file:///...); NULL: files stay on the local disk.
    artifact_store: Mapped[str | None] = mapped_column(Text)


class ModelDiff(Base):
    """A stored model diff report (``registry.diff``), keyed by both models' file checksums + parameters.

    ``key`` is the sha256 of the canonical JSON of the two models' recorded file
    checksums and the diff parameters, so a report is found again only while both
    models still have exactly the files it was computed from. Model ids are plain
    strings (like ``selections``): deleting a model does not delete its reports.
    """

    __tablename__ = "model_diffs"
    __table_args__ = (Index("ix_model_diffs_models", "model_a", "model_b"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model_a: Mapped[str] = mapped_column(String(ID_LENGTH))
    model_b: Mapped[str] = mapped_column(String(ID_LENGTH))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
