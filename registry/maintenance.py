"""Operator tasks shared by ``cfreg`` and the automation scripts in ``tools/``.

* :func:`read_model_folder` / :func:`update_registry_from_folder`: register a
  trained model from its artifact folder alone (``tools/update_registry.py``,
  ``cfreg register``), optionally promoting it when it beats the current best.
* :func:`plan_cleanup` / :func:`cleanup_old_models`: keep the newest models per
  type and archive or delete the rest (``tools/cleanup_old_models.py``,
  ``cfreg cleanup``), never touching the current best, a model in a running
  A/B test or a model linked to BERT embeddings (:func:`cleanup_protection`, the
  rule ``registry.utils.cleanup_old_artifacts`` applies too).

The two jobs live in :mod:`registry.folder_registration` and :mod:`registry.model_cleanup`;
this module re-exports their names (the documented import path). Read-only SQL
(``cfreg sql``) lives in :mod:`registry.readonly_sql`.

Everything here goes through the public registry API, so validation, audit and
the JSON export happen exactly as for any other caller.
"""

from __future__ import annotations

from .folder_registration import (
    ModelFolder,
    UpdateResult,
    detect_model_type,
    metrics_from_document,
    read_model_folder,
    stored_artifacts_path,
    update_registry_from_folder,
)
from .model_cleanup import CleanupItem, CleanupReport, cleanup_old_models, cleanup_protection, plan_cleanup

__all__ = [
    "CleanupItem",
    "CleanupReport",
    "ModelFolder",
    "UpdateResult",
    "cleanup_old_models",
    "cleanup_protection",
    "detect_model_type",
    "metrics_from_document",
    "plan_cleanup",
    "read_model_folder",
    "stored_artifacts_path",
    "update_registry_from_folder",
]
