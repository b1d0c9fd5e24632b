"""Keeping the newest models per type and archiving or deleting the rest (``tools/cleanup_old_models.py``,
``cfreg cleanup``), never touching the current best, a model in a running A/B test or a
model linked to BERT embeddings (:func:`cleanup_protection`, the rule
``registry.utils.cleanup_old_artifacts`` applies too).

Every change goes through the public registry API, so validation, audit and the JSON
export happen exactly as for any other caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .abtest import running_test
from .errors import InvalidArgumentError, ModelInUseError, ModelNotFoundError, RegistryError
from .models import EmbeddingLink, Model
from .selection import settings_row
from .timestamps import format_timestamp as iso

if TYPE_CHECKING:
    from .cf_registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass
class CleanupItem:
    """One model's fate in a cleanup: ``keep``, ``archive``, ``delete``, ``skip`` or ``none``."""

    model_id: str
    model_type: str
    created_at: str | None
    status: str
    action: str
    reason: str
    done: bool = False
    error: str | None = None  # an error after the change committed (e.g. files left behind), or the failure


@dataclass
class CleanupReport:
    """Outcome (or, with ``dry_run``, the plan) of :func:`cleanup_old_models`."""

    keep_last: int
    archive_old: bool
    delete_files: bool
    dry_run: bool
    items: list[CleanupItem] = field(default_factory=list)

    def ids(self, action: str) -> list[str]:
        """Model ids whose action is ``action``."""
        return [item.model_id for item in self.items if item.action == action]

    @property
    def kept(self) -> list[str]:
        return self.ids("keep")

    @property
    def archived(self) -> list[str]:
        return [item.model_id for item in self.items if item.action == "archive" and item.done]

    @property
    def deleted(self) -> list[str]:
        return [item.model_id for item in self.items if item.action == "delete" and item.done]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return [{"model_id": item.model_id, "reason": item.reason} for item in self.items if item.action == "skip"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kept=self.kept, archived=self.archived, deleted=self.deleted, skipped=self.skipped)
        return data


def cleanup_protection(session: Session) -> dict[str, str]:
    """Models no cleanup may archive, delete or remove the files of: ``{model_id: reason}``.

    The one rule both cleanups apply (:func:`cleanup_old_models` and
    ``registry.utils.cleanup_old_artifacts``): the current best (``"current best"``),
    the two models of the running A/B test (``"in running A/B test T"``) and every
    model linked to BERT embeddings (``"linked to BERT embeddings V"``; deleting it
    would silently drop the link).
    """
    protected: dict[str, str] = {}
    current = settings_row(session).current_model_id
    if current:
        protected[current] = "current best"
    test = running_test(session)
    if test is not None:
        for model_id in (test.control_model, test.treatment_model):
            protected.setdefault(model_id, f"in running A/B test {test.test_id}")
    links = select(EmbeddingLink.model_id, EmbeddingLink.embedding_version).order_by(
        EmbeddingLink.model_id, EmbeddingLink.embedding_version
    )
    for model_id, version in session.execute(links):
        protected.setdefault(model_id, f"linked to BERT embeddings {version}")
    return protected


def plan_cleanup(registry: ModelRegistry, keep_last: int, *, archive_old: bool = False,
                 delete_files: bool = False) -> CleanupReport:
    """What :func:`cleanup_old_models` would do now, without changing anything.

    Per model type, models (any status) are ranked by ``created_at``, newest first
    (ties by id); the first ``keep_last`` are kept. Of the rest, the models of
    :func:`cleanup_protection` (current best, running A/B test, linked to BERT
    embeddings) are skipped; the others are archived (``archive_old``; already
    archived ones are left as they are) or deleted.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise InvalidArgumentError(f"keep_last must be an integer >= 0, got {keep_last!r}")

    def work(session: Session) -> tuple[list[tuple[str, str, Any, str]], dict[str, str]]:
        rows = session.execute(
            select(Model.model_id, Model.model_type, Model.created_at, Model.status)
            .order_by(Model.model_type, Model.created_at.desc(), Model.model_id.desc())
        ).all()
        return [(model_id, model_type, created, status) for model_id, model_type, created, status in rows], cleanup_protection(session)

    rows, protected = registry.context.read(work)
    report = CleanupReport(keep_last=keep_last, archive_old=archive_old, delete_files=delete_files, dry_run=True)
    rank: dict[str, int] = {}
    for model_id, model_type, created_at, status in rows:
        rank[model_type] = rank.get(model_type, 0) + 1
        item = CleanupItem(model_id, model_type, iso(created_at), status, "keep", "")
        if rank[model_type] <= keep_last:
            item.reason = f"among the {keep_last} newest {model_type} models"
        elif model_id in protected:
            item.action, item.reason = "skip", protected[model_id]
        elif archive_old and status == "archived":
            item.action, item.reason = "none", "already archived"
        else:
            item.action = "archive" if archive_old else "delete"
            item.reason = f"older than the {keep_last} newest {model_type} models"
        report.items.append(item)
    return report


def cleanup_old_models(
    registry: ModelRegistry,
    keep_last: int,
    *,
    archive_old: bool = False,
    dry_run: bool = False,
    delete_files: bool = False,
    on_item: Callable[[CleanupItem, int, int], None] | None = None,
) -> CleanupReport:
    """Keep the ``keep_last`` newest models per type; archive or delete the others.

    See :func:`plan_cleanup` for who is kept and who is spared. Just before each
    change the protection is read again (a model linked or promoted meanwhile is
    skipped), and each change goes through :meth:`ModelRegistry.archive_model` /
    :meth:`ModelRegistry.delete_model` (audited; files removed only with
    ``delete_files`` and only inside the artifacts root), so a model that became the
    current best or entered an A/B test meanwhile is still refused. Refusals, shared
    or unsafe folders and any other registry error of one model (e.g. its folder
    could not be removed after its entry was deleted) are recorded on the item
    (``reason``, and ``error`` for failures) instead of stopping the run.

    Args:
        registry: the registry to clean.
        keep_last: models kept per type (>= 0).
        archive_old: archive instead of delete.
        dry_run: only plan; nothing changes.
        delete_files: with deletion, also remove the model folders.
        on_item: called as ``on_item(item, done, total)`` after each model is handled (progress display).
    """
    if archive_old and delete_files:
        raise InvalidArgumentError("delete_files applies to deletion; drop it or drop archive_old")
    report = plan_cleanup(registry, keep_last, archive_old=archive_old, delete_files=delete_files)
    report.dry_run = dry_run
    if dry_run:
        return report
    total = len(report.items)
    for done, item in enumerate(report.items, start=1):
        if item.action in ("archive", "delete"):
            _apply(registry, item, delete_files)
            logger.info("cleanup %s: %s (%s)", item.model_id, item.action, item.reason)
        if on_item is not None:
            on_item(item, done, total)
    return report


def _apply(registry: ModelRegistry, item: CleanupItem, delete_files: bool) -> None:
    """Archive or delete one planned model, recording the outcome on ``item``."""
    reason = registry.context.read(cleanup_protection).get(item.model_id)
    if reason is not None:  # promoted, linked or put in a test since the plan was made
        item.action, item.reason = "skip", reason
        return
    try:
        if item.action == "archive":
            item.done = registry.archive_model(item.model_id)
            if not item.done:
                item.action, item.reason = "skip", "current best"
        else:
            item.done = registry.delete_model(item.model_id, delete_files=delete_files)
    except (ModelInUseError, InvalidArgumentError) as exc:
        item.action, item.reason = "skip", str(exc)
    except ModelNotFoundError:  # removed meanwhile by another process
        item.action, item.reason = "none", "already gone"
    except RegistryError as exc:
        # E.g. delete_model: the entry was deleted (committed) but its folder could not be removed;
        # or the export after the commit failed. Whether the change took effect is read back.
        logger.error("cleanup %s: %s", item.model_id, exc)
        item.error = str(exc)
        try:
            model = registry.get_model(item.model_id)
        except RegistryError:
            model = {}  # cannot tell: report it as not done
        item.done = model is None if item.action == "delete" else (model or {}).get("status") == "archived"
        item.reason = str(exc) if item.done else f"failed: {exc}"
        if not item.done:
            item.action = "skip"
