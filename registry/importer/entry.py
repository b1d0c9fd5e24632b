"""Importing ``registry.json`` / ``bert_registry.json`` files (the original JSON registry's, or ours).

Teams upgrading from the original JSON registry keep their history: when a new
database is created beside an existing ``registry.json`` (and/or
``bert_registry.json``), :func:`import_legacy_if_present` imports it once, after
keeping a backup copy of each file. The same code imports any file on demand
(:func:`import_registry_json`).

Every file is read by :func:`registry.fsio.read_json_strict`, then checked by
:func:`registry.importer.parse.parse_documents`; whatever the file holds, that
raises nothing but :class:`ImportFormatError` naming the file (and
``FileNotFoundError`` for a missing one). All rows and one ``IMPORT`` audit event
commit in one transaction (:mod:`registry.importer.store` writes them): a file
with any error stores nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, export
from ..backup_files import copy_to_backup
from ..errors import ImportFormatError, InvalidArgumentError, ModelExistsError
from ..fsio import import_errors, read_json_strict
from ..models import AuditEvent
from ..pg_statistics import refresh_statistics
from .parse import DEFAULT_SELECTION_CRITERIA, DERIVED_METADATA, parse_documents
from .store import clear_registry, find_conflicts, fingerprint_artifacts, insert_parsed, is_registry_empty

if TYPE_CHECKING:
    from ..context import RegistryContext

logger = logging.getLogger(__name__)


def import_registry_json(
    context: RegistryContext,
    json_path: str | os.PathLike[str] | None,
    bert_json_path: str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Import a ``registry.json`` (and optionally a ``bert_registry.json``) into the registry.

    Args:
        context: the opened registry (``ModelRegistry(...).context``).
        json_path: the ``registry.json`` to import (None: only the BERT file).
        bert_json_path: a ``bert_registry.json`` to import with it.
        replace: replace every model, embedding, selection and A/B test of the
            registry (the audit trail is kept). Without it the file's content is
            added: an id that already exists is an error, and the registry's own
            current best, current embeddings, running A/B test and settings win.

    Returns:
        Counts: ``models``, ``metrics``, ``artifact_files``, ``embeddings``,
        ``links``, ``ab_tests``, ``current_best``, ``current_embeddings``,
        ``skipped_values``, the ``warnings`` list and ``imported`` (True).

    Raises:
        FileNotFoundError: a named file does not exist.
        ImportFormatError: the file cannot be parsed or a field is invalid
            (nothing is stored).
        ModelExistsError: without ``replace``, a model, embeddings version or A/B
            test id of the file already exists (nothing is stored).
    """
    if json_path is None and bert_json_path is None:
        raise InvalidArgumentError("nothing to import: give json_path and/or bert_json_path")
    return _import(context, json_path, bert_json_path, replace=replace, only_if_fresh=False)


def _import(
    context: RegistryContext,
    json_path: str | os.PathLike[str] | None,
    bert_json_path: str | os.PathLike[str] | None,
    *,
    replace: bool,
    only_if_fresh: bool,
) -> dict[str, Any]:
    source = Path(json_path).name if json_path is not None else "registry.json"
    bert_source = Path(bert_json_path).name if bert_json_path is not None else "bert_registry.json"
    with import_errors(source):
        document = read_json_strict(json_path) if json_path is not None else None
    with import_errors(bert_source):
        bert_document = read_json_strict(bert_json_path) if bert_json_path is not None else None
    parsed = parse_documents(document, bert_document, source=source, bert_source=bert_source)
    fingerprint_artifacts(parsed, context)
    sources = [str(Path(p).absolute()) for p in (json_path, bert_json_path) if p is not None]
    counts = parsed.counts()
    target = Path(json_path if json_path is not None else bert_json_path).name  # type: ignore[arg-type]

    def work(session: Session) -> bool:
        if only_if_fresh and not is_registry_empty(session, audit_events=True):
            logger.warning("the new registry already has content (another process was faster); %s not imported: "
                           "import it with import_registry_json (`cfreg import-json`) if needed", sources)
            return False
        merge = False
        if replace:
            clear_registry(session)
        elif not is_registry_empty(session):
            conflicts = find_conflicts(session, parsed)
            if conflicts:
                raise ModelExistsError(
                    f"the registry already holds {', '.join(conflicts[:10])}{' ...' if len(conflicts) > 10 else ''}; "
                    "import with replace=True to replace the registry's content (the audit trail is kept)"
                )
            merge = True
        counts.update(insert_parsed(session, parsed, merge=merge))
        counts["warnings"] = list(dict.fromkeys(parsed.warnings))  # a retried transaction warns twice
        audit.record(
            session, "IMPORT", target,
            f"models={counts['models']} embeddings={counts['embeddings']} current_best={counts['current_best'] or 'none'}",
            {"sources": sources, "replace": bool(replace), "legacy_registry_version": parsed.legacy_registry_version,
             **{k: v for k, v in counts.items() if k != "warnings"}, "warnings": counts["warnings"][:50]},
        )
        return True

    counts["imported"] = bool(context.mutate(work))
    if counts["imported"]:
        refresh_statistics(context.database.engine)  # a bulk load: plan the next queries from its statistics
    return counts


# How to get past a legacy file that cannot be imported (every open retries it until then).
_UNBLOCK = (
    "fix the file in place and open the registry again (it is imported then), or move it away to open the "
    "registry empty and import a fixed copy with import_registry_json(..., replace=True) / `cfreg import-json`"
)


# Any audit event at all (the first one found): a scalar subquery, so an opener can ask it
# together with its other reads.
ANY_AUDIT_EVENT = select(AuditEvent.id).limit(1)


def import_pending(context: RegistryContext, audited: bool | None = None) -> bool:
    """True when a JSON file beside the registry may still have to be imported.

    That is: ``registry.json`` or ``bert_registry.json`` exists and the database has
    never recorded an audit event. Every change, the import included, commits with its
    audit event, so a database without one has neither imported the files nor been
    changed since it was created: an import killed part-way (its transaction rolled
    back) is retried by the next open, and no export can have replaced the file yet.

    Args:
        context: the opened registry.
        audited: whether the database has recorded an audit event, when the caller
            already read it (``ANY_AUDIT_EVENT``); read here when None.
    """
    if not (context.json_path.is_file() or context.bert_json_path.is_file()):
        return False
    if audited is None:
        audited = context.read(lambda session: session.scalar(ANY_AUDIT_EVENT) is not None)
    return not audited


def import_legacy_if_present(context: RegistryContext) -> bool:
    """Import the JSON files found beside a new database; True if something was imported.

    Called by :func:`registry.opening.open_context` when it created the database, and on every
    later open while :func:`import_pending` (an earlier import was killed). Each file
    with content (anything beyond what an empty registry exports: see
    :func:`has_content`) is first preserved as ``{stem}_backup_{timestamp}.json``
    (listed by ``list_backups`` and restorable), because the next export rewrites it
    in the registry's own format.

    Raises:
        ImportFormatError: the file is not importable; the registry stays empty and
            the message names the preserved copy to fix and import by hand.
    """
    if context.created:
        _forget_generations(context)
    sources = [p if p.is_file() else None for p in (context.json_path, context.bert_json_path)]
    if not any(sources):
        return False
    json_path, bert_path = sources
    try:
        with import_errors(json_path.name if json_path else "registry.json"):
            document = read_json_strict(json_path) if json_path else None
        with import_errors(bert_path.name if bert_path else "bert_registry.json"):
            bert_document = read_json_strict(bert_path) if bert_path else None
        if not has_content(document, "models") and not has_content(bert_document, "embeddings"):
            return False
    except ImportFormatError as exc:
        copies = _preserve(sources)
        raise ImportFormatError(f"{exc} (the file was kept as {copies}); {_UNBLOCK}") from exc
    _forget_generations(context)  # a retried import: the creating open may have died before doing it
    copies = _preserve(sources)
    try:
        counts = _import(context, json_path, bert_path, replace=False, only_if_fresh=True)
    except ImportFormatError as exc:
        raise ImportFormatError(
            f"legacy import failed: {exc}. The registry is empty; the original file was kept as {copies}; {_UNBLOCK}"
        ) from exc
    if counts["imported"]:
        logger.info("imported legacy registry %s: %s", [str(p) for p in sources if p], counts)
    return bool(counts["imported"])


def _forget_generations(context: RegistryContext) -> None:
    # A generation sidecar beside the files belongs to the database that wrote them, not this one.
    for path in (context.json_path, context.bert_json_path):
        export.forget_generation(path)


def has_content(document: Any, entries_key: str) -> bool:
    """False only for the shape an empty registry exports; anything else must be kept (and imported).

    The empty shape: ``current_best`` null/empty, ``{entries_key}`` (``models`` or
    ``embeddings``) empty, ``bert_embeddings`` / ``ab_test`` absent or empty, and
    ``metadata`` holding only derived keys with the default selection criteria. Any
    other top-level key (``reranking_config``, ``normalization_ranges``...) is
    content: it is imported into ``settings.extra`` and must not be overwritten.
    """
    if document is None:
        return False
    if not isinstance(document, dict):
        return True  # not a registry at all: keep it and let the import report it
    for key, value in document.items():
        if key == "metadata":
            if not isinstance(value, dict) or set(value) - set(DERIVED_METADATA):
                return True
            if value.get("selection_criteria") not in (None, DEFAULT_SELECTION_CRITERIA):
                return True
        elif key in ("current_best", entries_key, "bert_embeddings", "ab_test"):
            if not (value is None or (isinstance(value, (str, dict, list)) and not value)):
                return True
        else:
            return True
    return False


def _preserve(sources: list[Path | None]) -> list[str]:
    """A backup copy of each file; an identical copy kept by an earlier (killed or failed) attempt is reused."""
    return [_identical_backup(path) or copy_to_backup(path) for path in sources if path is not None]


def _identical_backup(path: Path) -> str | None:
    data = path.read_bytes()
    for candidate in sorted(path.parent.glob(f"{path.stem}_backup_*{path.suffix}")):
        try:
            if candidate.stat().st_size == len(data) and candidate.read_bytes() == data:
                return str(candidate)
        except OSError:
            continue
    return None
