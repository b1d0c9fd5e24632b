"""Lifecycle, the part of :class:`~registry.cf_registry.ModelRegistry` that changes a registered
model other than by selection: tags and description, status, archive, delete (with its files),
and its files in the artifact store (verify, push).

A mixin, like :mod:`registry.admin_facade`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from . import aliases, audit, selection, tags, usage
from .deletion import Freed, delete_then_remove_files
from .errors import ModelInUseError
from .facade_base import RegistryFacade
from .safe_delete import DeletionTarget, check_deletable
from .storage import is_uri
from .storage.refs import store_objects_of_model
from .validation import validate_flag, validate_identifier, validate_status

# The name ModelRegistry has always logged under (this code was in registry/cf_registry.py).
logger = logging.getLogger("registry.cf_registry")


class RegistryLifecycle(RegistryFacade):
    """Changing and removing registered models (mixed into ``ModelRegistry``)."""

    def set_tag(self, model_id: str, key: str, value: str) -> bool:
        """Set tag ``key`` of a model to ``value``; False when it already had that value.

        Raises:
            ModelNotFoundError: unknown id. InvalidArgumentError: a key outside the id rules or
                a value that is not single-line text of at most 1,024 characters.
        """
        validate_identifier(model_id, "model_id")
        key, value = tags.validate_tag(key, value)

        def work(session: Session) -> bool:
            selection.require_model(session, model_id)
            return tags.set_tag(session, "model", model_id, key, value)

        return self._ctx.mutate(work)

    def delete_tag(self, model_id: str, key: str) -> bool:
        """Remove a model's tag; False when it was not set.

        Raises:
            ModelNotFoundError: unknown id.
        """
        validate_identifier(model_id, "model_id")
        key, _ = tags.validate_tag(key)

        def work(session: Session) -> bool:
            selection.require_model(session, model_id)
            return tags.delete_tag(session, "model", model_id, key)

        return self._ctx.mutate(work)

    def set_description(self, model_id: str, description: str | None) -> bool:
        """Set a model's description (None or "" clears it); False when unchanged.

        Raises:
            ModelNotFoundError: unknown id. InvalidArgumentError: not text, or over 10,000 characters.
        """
        validate_identifier(model_id, "model_id")
        text = tags.validate_description(description)

        def work(session: Session) -> bool:
            return tags.set_description(session, selection.require_model(session, model_id), model_id, text)

        return self._ctx.mutate(work)

    # ------------------------------------------------------------------ lifecycle

    def archive_model(self, model_id: str) -> bool:
        """Archive a model (kept, no longer selectable).

        Returns:
            True when archived (or already archived); False for the current best.

        Raises:
            ModelNotFoundError: unknown id. ModelInUseError: in a running A/B test.
        """
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> bool:
            model = selection.require_model(session, model_id)
            if selection.current_model_id(session) == model_id:
                logger.warning("Cannot archive %s: it is the current best; select or promote another model first", model_id)
                return False
            usage.refuse_if_in_running_test(session, model_id, "archive")
            aliases.refuse_if_aliased(session, model_id, "archive")
            if model.status == "archived":
                return True
            previous, model.status = model.status, "archived"
            audit.record(session, "ARCHIVE", model_id, "reason=manual", {"previous_status": previous})
            return True

        return self._ctx.mutate(work)

    def update_model_status(self, model_id: str, status: str) -> bool:
        """Set a model's status (``active``, ``archived``, ``failed``).

        Raises:
            InvalidArgumentError: unknown status. ModelNotFoundError: unknown id.
            ModelInUseError: deactivating the current best or a model in a running A/B test.
        """
        validate_identifier(model_id, "model_id")
        validate_status(status)

        def work(session: Session) -> bool:
            model = selection.require_model(session, model_id)
            if status != "active":
                if selection.current_model_id(session) == model_id:
                    raise ModelInUseError(f"Model {model_id!r} is the current best and cannot become {status}; promote another model first")
                usage.refuse_if_in_running_test(session, model_id, f"mark {status}")
                aliases.refuse_if_aliased(session, model_id, f"mark {status}")
            if model.status == status:
                return True
            previous, model.status = model.status, status
            audit.record(session, "UPDATE_STATUS", model_id, f"status={status}", {"previous_status": previous, "status": status})
            return True

        return self._ctx.mutate(work)

    def delete_model(self, model_id: str, delete_files: bool = False) -> bool:
        """Remove a model from the registry (and optionally its artifact folder).

        Files are deleted only when the folder resolves inside the artifacts root,
        is not a symlink, and is not used by any other model or embeddings version.
        The database change commits first; the folder is removed after.

        Raises:
            ModelNotFoundError: unknown id.
            ModelInUseError: current best, running A/B test, or shared files.
            InvalidArgumentError: the folder escapes the artifacts root.
        """
        validate_identifier(model_id, "model_id")
        delete_files = validate_flag(delete_files, "delete_files")
        def work(session: Session) -> Freed:
            model = selection.require_model(session, model_id)
            if selection.current_model_id(session) == model_id:
                raise ModelInUseError(f"Model {model_id!r} is the current best and cannot be deleted; promote another model first")
            usage.refuse_if_in_running_test(session, model_id, "delete")
            aliases.refuse_if_aliased(session, model_id, "delete")
            folders: list[DeletionTarget] = []
            objects = store_objects_of_model(session, model_id) if delete_files else []
            if delete_files and not objects and not is_uri(model.path):
                # Store objects are removed after commit when no record names them any more.
                folder = self._ctx.resolve(model.path)
                folders.append(check_deletable(folder, self._ctx.artifacts_root))
                usage.refuse_if_folder_shared(session, self._ctx, folder, f"model {model_id!r}", skip_model=model_id)
            session.delete(model)
            audit.record(session, "DELETE", model_id, f"delete_files={delete_files}",
                         {"path": model.path, "delete_files": delete_files})
            return folders, objects

        delete_then_remove_files(self._ctx, work, leftover=f"model {model_id} was deleted from the registry but its files remain")
        return True

    # ------------------------------------------------------------------ artifact store

    def verify_artifacts(self, model_id: str | None = None) -> dict[str, Any]:
        """Check that recorded files exist with their size and sha256 (local or in a store).

        Args:
            model_id: one model; None checks every model and embeddings version.

        Returns:
            ``{"checked": n, "problems": [{"kind", "id", "file_name", "location", "problem"}]}``.
        """
        if model_id is not None:
            validate_identifier(model_id, "model_id")
        from .storage.manage import verify_files

        return verify_files(self._ctx, model_id)

    def push_artifacts(self, model_id: str) -> dict[str, Any]:
        """Move a local model's files into the registry's artifact store (see :func:`registry.storage.manage.push_model`)."""
        validate_identifier(model_id, "model_id")
        from .storage.manage import push_model

        return push_model(self._ctx, model_id)
