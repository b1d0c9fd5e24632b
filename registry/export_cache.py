"""Writing ``registry.json`` and ``bert_registry.json``, re-rendering only the models a change touched.

A full export reads every model, metric and tag and encodes every entry: about half a
second at 10,000 models, paid by every change. This module keeps, per process and per
file, the rendered ``models`` lines of the last document this process wrote. When the
next change committed by this process is the very next generation and its audit events
say which models it touched, only those models are read and rendered again; the small
parts of the document (current best, metadata, A/B test, aliases) are rebuilt every time.
The text is byte-identical to a full rebuild (``tests/test_export_incremental.py`` checks
that after random operations on both backends).

Anything else rebuilds the whole document: another process wrote in between (the
generation, or the generation recorded beside the file, does not follow on), an action
this module does not list (imports, restores, links, embeddings, anything added later),
or a new model that does not sort after every other model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .documents import assemble_registry_document, build_bert_document, build_registry_document, model_info, render_entry
from .export import Change, export_lock, file_generation, publish
from .models import Model, Settings
from .queries import metrics_by_model
from .tags import tags_of

logger = logging.getLogger(__name__)

# Actions whose only effect on the document's models is on the model named by the event's target.
MODEL_ACTIONS = frozenset({"REGISTER", "ARCHIVE", "UPDATE_STATUS", "DELETE", "TAG_SET", "TAG_DELETE", "DESCRIBE"})
# Actions that change no model entry (only the parts rebuilt every time, or nothing in the file).
DOCUMENT_ACTIONS = frozenset({
    "SELECT_BEST", "PROMOTE", "ROLLBACK", "ALIAS_SET", "ALIAS_DELETE", "AB_START", "AB_SPLIT", "AB_STOP",
    "AB_ROLLBACK", "AB_OUTCOMES", "AB_PROMOTE", "AB_ARM", "DIFF",
})


@dataclass
class _Rendered:
    """The ``models`` lines, in document order, of the file this process last wrote."""

    generation: int
    lines: dict[str, str]


_CACHE: dict[tuple[str, str], _Rendered] = {}
_LOCK = threading.Lock()


def _key(database: Any, json_path: Path) -> tuple[str, str]:
    return str(database.url), str(json_path.absolute())


def remember(database: Any, json_path: Path, document: dict[str, Any], generation: int) -> dict[str, str]:
    """Render a full document's model lines, keep them for the next change, and return them."""
    lines = {model_id: render_entry(model_id, info) for model_id, info in document["models"].items()}
    with _LOCK:
        _CACHE[_key(database, json_path)] = _Rendered(generation, lines)
    return lines


def publish_change(database: Any, json_path: Path, change: Change) -> bool | None:
    """Write the file for ``change`` re-rendering only its models; None when a full rebuild is needed.

    The caller holds the file's export lock. Returns True when written (as
    :func:`registry.export.publish` does).
    """
    with _LOCK:
        rendered = _CACHE.get(_key(database, json_path))
    if rendered is None or rendered.generation != change.generation - 1:
        return None
    touched: set[str] = set()
    registered: set[str] = set()
    for action, target in change.events:
        if action in MODEL_ACTIONS:
            touched.add(target)
            if action == "REGISTER":
                registered.add(target)
        elif action not in DOCUMENT_ACTIONS:
            return None
    if registered & rendered.lines.keys():
        return None  # a re-registration (overwrite=True) gets a new created_at: its place in the file moves
    if file_generation(json_path) != rendered.generation:
        return None  # rewritten, deleted or restored by someone else since

    def read(session: Session) -> tuple[dict[str, Any], dict[str, str], int] | None:
        settings = session.get(Settings, 1)
        assert settings is not None
        if settings.generation != change.generation:
            return None  # another process committed after this change
        lines = dict(rendered.lines)
        if touched:
            found = {m.model_id: m for m in session.scalars(select(Model).where(Model.model_id.in_(touched)))}
            added = sorted((m for i, m in found.items() if i not in lines), key=lambda m: (m.created_at, m.model_id))
            if added and not _sort_last(session, [m.model_id for m in added]):
                return None
            for model_id in touched - set(found):
                lines.pop(model_id, None)  # deleted, or a target that is not a model (an embeddings tag)
            metrics = metrics_by_model(session, sorted(found))
            tags = tags_of(session, "model", sorted(found))
            updated = [m for i, m in found.items() if i in lines]
            for model in [*updated, *added]:  # updates keep their place, new models go last in order
                lines[model.model_id] = render_entry(
                    model.model_id, model_info(model, metrics.get(model.model_id, {}), tags.get(model.model_id)))
        return assemble_registry_document(session, settings, lines), lines, settings.generation

    result = database.read(read)
    if result is None:
        return None
    document, lines, generation = result
    written = publish(json_path, document, generation, "models", entries=lines)
    with _LOCK:
        _CACHE[_key(database, json_path)] = _Rendered(generation, lines)
    logger.debug("exported %s re-rendering %d model(s)", json_path, len(touched))
    return written


def _sort_last(session: Session, added: list[str]) -> bool:
    """Whether ``added`` (in document order) are the last models in document order."""
    newest = session.scalars(
        select(Model.model_id).order_by(Model.created_at.desc(), Model.model_id.desc()).limit(len(added))
    ).all()
    return list(reversed(newest)) == added


def export_registry_files(database, json_path: Path, bert_json_path: Path | None, *, force: bool = False,  # type: ignore[no-untyped-def]
                          change: Change | None = None) -> bool:
    """Export ``registry.json`` (and ``bert_registry.json`` when embeddings exist or the file does).

    Reads the database in one short read transaction per file, inside the file's lock,
    so concurrent exporters can never leave an older document in place. ``change``: what
    the transaction just committed by this process changed; when this process also wrote
    the previous generation's file, only the changed models are read and rendered again
    (see :func:`publish_change`), else the whole document is rebuilt.
    """
    with export_lock(json_path):
        written = None if change is None or force else publish_change(database, json_path, change)
        if written is None:
            document, generation = database.read(build_registry_document)
            entries = remember(database, json_path, document, generation)
            written = publish(json_path, document, generation, "models", force=force, entries=entries)
    if bert_json_path is not None:
        with export_lock(bert_json_path):
            bert_document, generation = database.read(build_bert_document)
            if bert_document["embeddings"] or bert_json_path.exists():
                written = publish(bert_json_path, bert_document, generation, "embeddings", force=force) or written
    return written
