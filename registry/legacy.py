"""The former home of the ``registry.json`` import; its names now live in :mod:`registry.importer`.

Kept so that ``registry.legacy`` keeps working for callers and scripts:
``parse`` (documents -> rows), ``store`` (rows -> tables), ``entry`` (the imports),
and the strict JSON reader in :mod:`registry.fsio`. Code inside the package imports
from those modules, not from here.
"""

from __future__ import annotations

from .errors import NonFiniteNumberError
from .fsio import MAX_IMPORT_BYTES, import_errors, read_json_strict
from .importer.entry import has_content, import_legacy_if_present, import_pending, import_registry_json
from .importer.parse import (
    BACKUP_FORMAT,
    BACKUP_KEYS,
    DEFAULT_SELECTION_CRITERIA,
    DERIVED_METADATA,
    EMBEDDING_FIELDS,
    MAX_COUNT,
    MODEL_FIELDS,
    REGISTRY_KEYS,
    SELECTED_BY_LENGTH,
    ParsedRegistry,
    parse_documents,
    short_repr,
)
from .importer.store import clear_registry, find_conflicts, fingerprint_artifacts, insert_parsed, is_registry_empty

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_KEYS",
    "DEFAULT_SELECTION_CRITERIA",
    "DERIVED_METADATA",
    "EMBEDDING_FIELDS",
    "MAX_COUNT",
    "MAX_IMPORT_BYTES",
    "MODEL_FIELDS",
    "NonFiniteNumberError",
    "REGISTRY_KEYS",
    "SELECTED_BY_LENGTH",
    "ParsedRegistry",
    "clear_registry",
    "find_conflicts",
    "fingerprint_artifacts",
    "has_content",
    "import_errors",
    "import_legacy_if_present",
    "import_pending",
    "import_registry_json",
    "insert_parsed",
    "is_registry_empty",
    "parse_documents",
    "read_json_strict",
    "short_repr",
]
