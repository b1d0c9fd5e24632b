"""Parsing ``registry.json`` / ``bert_registry.json`` documents into rows (pure: no database, no files).

:func:`parse_documents` checks an already-decoded document field by field and
returns a :class:`ParsedRegistry` of rows ready to insert. Quirks of the original
files are tolerated:

* ``current_best`` may be a dict, a bare model id string (written by the
  original deploy script), or null;
* bare ``NaN``/``Infinity`` tokens: non-finite metric values are skipped with a
  warning, non-finite numbers elsewhere are dropped (dict values) or become null
  (list items); nothing non-finite is ever stored;
* ``created_at`` with or without microseconds; naive times are taken as UTC;
* unknown top-level keys and unknown entry fields are kept in the ``extra``
  columns and written back on export;
* a ``bert_embeddings`` map inside ``registry.json`` (registry_version 1.1/1.2).

Every problem is an :class:`ImportFormatError` naming the file and the entry; a
builtin error a hostile value might still provoke is converted by
:func:`registry.fsio.import_errors`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from numbers import Real
from typing import Any

from ..defaults import AB_TEST_STATUSES, DEFAULT_METRIC
from ..errors import ImportFormatError, InvalidArgumentError
from ..fsio import import_errors
from ..timestamps import utcnow
from ..validation import (
    MODEL_STATUS,
    finite_real,
    json_payload,
    optional_text,
    path_text,
    positive_int,
    to_jsonable,
    validate_identifier,
    validate_metric_name,
)

logger = logging.getLogger(__name__)

# Top-level keys of registry.json that map to tables; every other key is kept in settings.extra.
REGISTRY_KEYS = ("current_best", "models", "metadata", "ab_test", "bert_embeddings")
# Keys of our own JSON backups: never carried into settings.extra by a plain import.
BACKUP_KEYS = ("backup", "tables")
BACKUP_FORMAT = "cf-model-registry-backup"
MODEL_FIELDS = (
    "model_id", "model_type", "version", "path", "created_at", "data_version", "git_commit", "hyperparameters",
    "metrics", "training_info", "baseline_comparison", "bert_integration", "status",
)
EMBEDDING_FIELDS = (
    "version", "path", "created_at", "model_name", "num_items", "embedding_dim", "data_version", "git_commit",
    "generation_config", "text_fields_used", "linked_models",
)
# Derived values of the documents' metadata (recomputed on export, not imported).
DERIVED_METADATA = ("registry_version", "last_updated", "num_models", "num_embeddings", "generation", "selection_criteria")
SELECTED_BY_LENGTH = 32
DEFAULT_SELECTION_CRITERIA = DEFAULT_METRIC
# num_items / embedding_dim are INTEGER columns (32-bit on PostgreSQL).
MAX_COUNT = 2**31 - 1

# --------------------------------------------------------------------------- parsed form


@dataclass
class ParsedRegistry:
    """Validated rows of one import, ready to insert (no database access yet)."""

    models: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    artifact_files: list[dict[str, Any]] = field(default_factory=list)
    embeddings: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    ab_tests: list[dict[str, Any]] = field(default_factory=list)
    current_best: dict[str, Any] | None = None
    current_embeddings: str | None = None
    selection_criteria: str | None = None
    settings_extra: dict[str, Any] | None = None
    legacy_registry_version: Any = None
    warnings: list[str] = field(default_factory=list)
    skipped_values: int = 0

    def warn(self, message: str) -> None:
        logger.warning("import: %s", message)
        self.warnings.append(message)

    def counts(self) -> dict[str, Any]:
        """What the import stores, for callers and the audit event."""
        return {
            "models": len(self.models),
            "metrics": len(self.metrics),
            "artifact_files": len(self.artifact_files),
            "embeddings": len(self.embeddings),
            "links": len(self.links),
            "ab_tests": len(self.ab_tests),
            "current_best": self.current_best["model_id"] if self.current_best else None,
            "current_embeddings": self.current_embeddings,
            "skipped_values": self.skipped_values,
            "warnings": list(self.warnings),
        }


def parse_documents(
    registry_document: Any | None,
    bert_document: Any | None = None,
    *,
    source: str = "registry.json",
    bert_source: str = "bert_registry.json",
) -> ParsedRegistry:
    """Check the documents and turn them into rows.

    Raises:
        ImportFormatError: any field that cannot be imported, named with its entry.
    """
    parsed = ParsedRegistry()
    bert_entries: dict[str, tuple[str, Any]] = {}
    if registry_document is not None:
        with import_errors(source):
            _parse_registry(registry_document, source, parsed, bert_entries)
    with import_errors(bert_source if bert_document is not None else source):
        _parse_bert(bert_document, bert_source, parsed, bert_entries)
    return parsed


def _parse_bert(bert_document: Any, bert_source: str, parsed: ParsedRegistry,
                bert_entries: dict[str, tuple[str, Any]]) -> None:
    bert_current: Any = None
    if bert_document is not None:
        if not isinstance(bert_document, dict):
            raise ImportFormatError(f"{bert_source}: the top level must be a JSON object, got {type(bert_document).__name__}")
        embeddings = bert_document.get("embeddings", {})
        if not isinstance(embeddings, dict):
            raise ImportFormatError(f"{bert_source}: 'embeddings' must map versions to entries, got {type(embeddings).__name__}")
        for version, entry in embeddings.items():
            bert_entries[version] = (bert_source, entry)  # the dedicated file wins over registry.json
        bert_current = bert_document.get("current_best")
        ignored = sorted(set(bert_document) - {"current_best", "embeddings", "metadata"})
        if ignored:
            parsed.warn(f"{bert_source}: top-level keys {ignored} have no place in the registry and are not imported")
    model_ids = {row["model_id"] for row in parsed.models}
    for version, (where, entry) in bert_entries.items():
        _parse_embedding(version, entry, where, parsed, model_ids)
    if isinstance(bert_current, dict):
        bert_current = bert_current.get("version")
    if bert_current not in (None, ""):
        versions = {row["version"] for row in parsed.embeddings}
        if not isinstance(bert_current, str) or bert_current not in versions:
            raise ImportFormatError(
                f"{bert_source}: current_best {bert_current!r} is not one of the embeddings in the file {sorted(versions)}"
            )
        parsed.current_embeddings = bert_current
    _links_from_bert_integration(parsed)


def _parse_registry(document: Any, source: str, parsed: ParsedRegistry, bert_entries: dict[str, tuple[str, Any]]) -> None:
    if not isinstance(document, dict):
        raise ImportFormatError(f"{source}: the top level must be a JSON object, got {type(document).__name__}")
    missing = [key for key in ("current_best", "models", "metadata") if key not in document]
    if missing:
        raise ImportFormatError(
            f"{source}: missing top-level key(s) {missing}; a registry.json has current_best, models and metadata"
        )
    models, metadata = document["models"], document["metadata"]
    if not isinstance(models, dict):
        raise ImportFormatError(f"{source}: 'models' must map model ids to entries, got {type(models).__name__}")
    if not isinstance(metadata, dict):
        raise ImportFormatError(f"{source}: 'metadata' must be an object, got {type(metadata).__name__}")
    for model_id, entry in models.items():
        _parse_model(model_id, entry, source, parsed)
    model_ids = {row["model_id"] for row in parsed.models}
    parsed.current_best = _parse_current_best(document["current_best"], source, model_ids, parsed)
    criteria = metadata.get("selection_criteria")
    if criteria is not None:
        parsed.selection_criteria = _checked(validate_metric_name, criteria, where=f"{source}: metadata.selection_criteria")
    legacy_version = metadata.get("registry_version")
    parsed.legacy_registry_version = legacy_version if _short_text(legacy_version, 32) else None
    ignored = sorted(set(metadata) - set(DERIVED_METADATA))
    if ignored:
        parsed.warn(f"{source}: metadata keys {ignored} are not imported (metadata is recomputed on export)")
    ab_test = document.get("ab_test")
    if ab_test is not None:
        parsed.ab_tests.append(_parse_ab_test(ab_test, source, model_ids))
    bert_embeddings = document.get("bert_embeddings")
    if bert_embeddings is not None:
        if not isinstance(bert_embeddings, dict):
            raise ImportFormatError(
                f"{source}: 'bert_embeddings' must map versions to entries, got {type(bert_embeddings).__name__}"
            )
        for version, entry in bert_embeddings.items():
            bert_entries[version] = (f"{source} bert_embeddings", entry)
    backup = document.get("backup")
    skip = set(REGISTRY_KEYS)
    if isinstance(backup, dict) and backup.get("format") == BACKUP_FORMAT:
        parsed.warn(f"{source} is a full backup: only its registry.json part is imported (use restore_registry for the history)")
        skip |= set(BACKUP_KEYS)
    extra = {key: value for key, value in document.items() if key not in skip}
    if extra:
        cleaned = _drop_non_finite(extra, f"{source}: top level", parsed)
        parsed.settings_extra = _checked(to_jsonable, cleaned, "extra top-level keys", where=source) or None


def _parse_model(model_id: Any, entry: Any, source: str, parsed: ParsedRegistry) -> None:
    where = f"{source}: model {model_id!r}"
    _checked(validate_identifier, model_id, "model_id", where=where)
    if not isinstance(entry, dict):
        raise ImportFormatError(f"{where}: the entry must be an object, got {type(entry).__name__}")
    if "model_id" in entry and entry["model_id"] != model_id:
        raise ImportFormatError(f"{where}: the entry says model_id {entry['model_id']!r}; the key and the field must agree")
    model_type = _checked(validate_identifier, entry.get("model_type"), "model_type", where=where)
    version = entry.get("version")
    if version is None and model_id.startswith(f"{model_type}_"):
        version = model_id[len(model_type) + 1:]
    version = _checked(validate_identifier, version, "version", where=where)
    status = entry.get("status", "active")
    if not isinstance(status, str) or status not in MODEL_STATUS:
        raise ImportFormatError(f"{where}: unknown status {status!r}; use one of {sorted(MODEL_STATUS)}")
    row: dict[str, Any] = {
        "model_id": model_id,
        "model_type": model_type,
        "version": version,
        "path": _stored_path(entry.get("path"), where),
        "status": status,
        "created_at": _parse_time(entry.get("created_at"), f"{where}: created_at", parsed),
        "data_version": _checked(optional_text, entry.get("data_version"), "data_version", where=where) or "unknown",
        "git_commit": _checked(optional_text, entry.get("git_commit"), "git_commit", 64, where=where),
    }
    for name in ("hyperparameters", "training_info"):
        row[name] = _payload(entry.get(name), f"{where}: {name}", parsed) or {}
    for name in ("baseline_comparison", "bert_integration"):
        row[name] = _payload(entry.get(name), f"{where}: {name}", parsed) or None
    extra = {key: value for key, value in entry.items() if key not in MODEL_FIELDS}
    row["extra"] = _payload(extra, f"{where}: extra fields", parsed) or None
    parsed.models.append(row)
    metrics = entry.get("metrics")
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise ImportFormatError(f"{where}: metrics must be an object of name -> number, got {metrics!r}")
    for name, value in metrics.items():
        _checked(validate_metric_name, name, where=f"{where}: metrics")
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ImportFormatError(f"{where}: metric {name!r} must be a number, got {short_repr(value)}; fix or remove it")
        number = finite_real(value)
        if number is None:  # NaN, Infinity, or an integer too large for a float
            parsed.skipped_values += 1
            parsed.warn(f"{where}: metric {name!r} is {short_repr(value)}; skipped (only finite metrics are stored)")
            continue
        parsed.metrics.append({"model_id": model_id, "name": name, "value": number})


def _parse_current_best(value: Any, source: str, model_ids: set[str], parsed: ParsedRegistry) -> dict[str, Any] | None:
    where = f"{source}: current_best"
    if value is None or value == "":
        return None
    model_id: Any
    if isinstance(value, str):
        model_id, metric, number, selected_at, selected_by = value, None, None, None, "import"
    elif isinstance(value, dict):
        model_id = value.get("model_id")
        metric = value.get("selection_metric")
        if metric is not None:
            _checked(validate_metric_name, metric, where=f"{where}.selection_metric")
        number = value.get("selection_value")
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, Real):
                raise ImportFormatError(f"{where}: selection_value must be a number, got {short_repr(number)}")
            if finite_real(number) is None:
                parsed.skipped_values += 1
                parsed.warn(f"{where}: selection_value {short_repr(number)} is not finite; stored as null")
                number = None
        raw_at = value.get("selected_at")
        selected_at = None if raw_at is None else _parse_time(raw_at, f"{where}.selected_at", parsed)
        selected_by = _checked(optional_text, value.get("selected_by"), "selected_by", SELECTED_BY_LENGTH, where=where) or "auto"
    else:
        raise ImportFormatError(f"{where} must be an object, a model id or null, got {type(value).__name__}")
    if not isinstance(model_id, str) or model_id not in model_ids:
        raise ImportFormatError(f"{where} names model {model_id!r}, which is not in 'models'; fix the pointer or add the model")
    row = next(m for m in parsed.models if m["model_id"] == model_id)
    if row["status"] != "active":
        parsed.warn(f"{where}: {model_id} is {row['status']} but current; kept as it was (promote an active model)")
    return {
        "model_id": model_id,
        "metric": metric,
        "value": finite_real(number),
        "selected_at": selected_at,
        "selected_by": selected_by,
    }


def _parse_ab_test(value: Any, source: str, model_ids: set[str]) -> dict[str, Any]:
    where = f"{source}: ab_test"
    if not isinstance(value, dict):
        raise ImportFormatError(f"{where} must be an object, got {type(value).__name__}")
    test_id = _checked(validate_identifier, value.get("test_id"), "test_id", where=where)
    row: dict[str, Any] = {"test_id": test_id}
    for name in ("control_model", "treatment_model"):
        model_id = value.get(name)
        if not isinstance(model_id, str) or model_id not in model_ids:
            raise ImportFormatError(f"{where}: {name} {short_repr(model_id)} is not in 'models'")
        row[name] = model_id
    split = finite_real(value.get("traffic_split"))
    if split is None or not 0 <= split <= 1:
        raise ImportFormatError(
            f"{where}: traffic_split must be a number between 0 and 1, got {short_repr(value.get('traffic_split'))}"
        )
    row["traffic_split"] = split
    status = value.get("status", "running")
    if not isinstance(status, str) or status not in AB_TEST_STATUSES:
        raise ImportFormatError(f"{where}: status must be one of {list(AB_TEST_STATUSES)}, got {status!r}")
    row["status"] = status
    row["start_time"] = _parse_time(value.get("start_time"), f"{where}.start_time", None)
    row["end_time"] = None if value.get("end_time") is None else _parse_time(value["end_time"], f"{where}.end_time", None)
    row["promoted"] = _checked(optional_text, value.get("promoted"), "promoted", 16, where=where)
    return row


def _parse_embedding(version: Any, entry: Any, source: str, parsed: ParsedRegistry, model_ids: set[str]) -> None:
    where = f"{source}: embeddings {version!r}"
    _checked(validate_identifier, version, "version", where=where)
    if not isinstance(entry, dict):
        raise ImportFormatError(f"{where}: the entry must be an object, got {type(entry).__name__}")
    if entry.get("version", version) != version:
        raise ImportFormatError(f"{where}: the entry says version {entry['version']!r}; the key and the field must agree")
    row: dict[str, Any] = {
        "version": version,
        "path": _stored_path(entry.get("path"), where),
        "created_at": _parse_time(entry.get("created_at"), f"{where}: created_at", parsed),
        "model_name": _checked(optional_text, entry.get("model_name"), "model_name", 256, where=where) or "unknown",
        "num_items": _count(entry.get("num_items"), "num_items", where),
        "embedding_dim": _count(entry.get("embedding_dim"), "embedding_dim", where),
        "data_version": _checked(optional_text, entry.get("data_version"), "data_version", where=where) or "unknown",
        "git_commit": _checked(optional_text, entry.get("git_commit"), "git_commit", 64, where=where),
        "generation_config": _payload(entry.get("generation_config"), f"{where}: generation_config", parsed) or {},
        "file_name": None,  # filled by fingerprint_artifacts when the file exists
        "size_bytes": None,
        "sha256": None,
    }
    fields = entry.get("text_fields_used")
    if fields is None:
        fields = []
    if not isinstance(fields, list) or not all(isinstance(item, str) for item in fields):
        raise ImportFormatError(f"{where}: text_fields_used must be a list of strings, got {short_repr(fields)}")
    row["text_fields_used"] = _checked(to_jsonable, fields, "text_fields_used", where=where)
    extra = {key: value for key, value in entry.items() if key not in EMBEDDING_FIELDS}
    row["extra"] = _payload(extra, f"{where}: extra fields", parsed) or None
    parsed.embeddings.append(row)
    linked = entry.get("linked_models") or []
    if not isinstance(linked, list):
        raise ImportFormatError(f"{where}: linked_models must be a list of model ids, got {linked!r}")
    seen: set[str] = set()
    for model_id in linked:
        if not isinstance(model_id, str):
            raise ImportFormatError(f"{where}: linked_models must be a list of model ids, got the item {short_repr(model_id)}")
        if model_id in seen:
            continue
        seen.add(model_id)
        if model_id not in model_ids:
            # The original never checked link targets; a dangling link has nothing to point to.
            parsed.warn(f"{where}: linked model {model_id!r} is not in the registry; link skipped")
            continue
        parsed.links.append({"embedding_version": version, "model_id": model_id})


def _links_from_bert_integration(parsed: ParsedRegistry) -> None:
    versions = {row["version"] for row in parsed.embeddings}
    existing = {(link["embedding_version"], link["model_id"]) for link in parsed.links}
    for model in parsed.models:
        version = (model["bert_integration"] or {}).get("embeddings_version")
        if isinstance(version, str) and version in versions and (version, model["model_id"]) not in existing:
            parsed.links.append({"embedding_version": version, "model_id": model["model_id"]})
            existing.add((version, model["model_id"]))


# --------------------------------------------------------------------------- field helpers


def _checked(check: Any, value: Any, *args: Any, where: str) -> Any:
    """Run a validation helper, re-raising its error as ImportFormatError naming the entry."""
    try:
        return check(value, *args)
    except InvalidArgumentError as exc:
        raise ImportFormatError(f"{where}: {exc}") from exc


def _stored_path(value: Any, where: str) -> str:
    if not isinstance(value, str):  # a JSON file holds strings; path_text would also take os.PathLike
        raise ImportFormatError(f"{where}: path must be a non-empty single-line string, got {short_repr(value)}")
    return str(_checked(path_text, value, "path", where=where))


def _count(value: Any, field: str, where: str) -> int:
    """A positive count (as ``register_embeddings`` requires) that fits the INTEGER column."""
    number = _checked(positive_int, value, field, where=where)
    if number > MAX_COUNT:
        raise ImportFormatError(f"{where}: {field} {number} is larger than {MAX_COUNT}")
    return int(number)


def _short_text(value: Any, max_length: int) -> bool:
    """A string of at most ``max_length`` characters that UTF-8 can encode."""
    if not isinstance(value, str) or len(value) > max_length:
        return False
    try:
        to_jsonable(value, "text")
    except InvalidArgumentError:
        return False
    return True


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (a 4000-digit number is not a message)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond the str conversion limit
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_time(value: Any, where: str, parsed: ParsedRegistry | None) -> datetime:
    if value is None:
        if parsed is not None:
            parsed.warn(f"{where} is missing; the import time is used")
        return utcnow()
    if not isinstance(value, str):
        raise ImportFormatError(f"{where} must be an ISO timestamp string (YYYY-MM-DDTHH:MM:SS), got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)  # the original wrote naive local time; we cannot know the zone
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ImportFormatError(
            f"{where} {short_repr(value)} is not an ISO timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff]) in years 1-9999"
        ) from None


def _payload(value: Any, where: str, parsed: ParsedRegistry) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ImportFormatError(f"{where} must be an object, got {type(value).__name__}")
    cleaned = _drop_non_finite(value, where, parsed)
    try:
        return json_payload(cleaned, where)
    except InvalidArgumentError as exc:
        raise ImportFormatError(str(exc)) from exc


def _drop_non_finite(value: Any, where: str, parsed: ParsedRegistry, path: str = "") -> Any:
    """Remove NaN/Infinity: dict values are dropped, list items become null (depth is bounded by the parser)."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if isinstance(item, float) and not math.isfinite(item):
                parsed.skipped_values += 1
                parsed.warn(f"{where}: {inner} is {item!r}; dropped")
                continue
            result[key] = _drop_non_finite(item, where, parsed, inner)
        return result
    if isinstance(value, list):
        cleaned: list[Any] = []
        for index, item in enumerate(value):
            if isinstance(item, float) and not math.isfinite(item):
                parsed.skipped_values += 1
                parsed.warn(f"{where}: {path}[{index}] is {item!r}; stored as null")
                cleaned.append(None)
            else:
                cleaned.append(_drop_non_finite(item, where, parsed, f"{path}[{index}]"))
        return cleaned
    return value
