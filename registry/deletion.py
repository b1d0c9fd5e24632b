"""Deleting a record and then its files: the one flow behind model and embeddings deletion.

The row goes first, in one transaction with its audit event; the files it freed are removed
only after that commits. A crash in between leaves files nobody records (harmless, found by
``cfreg artifacts verify`` and cleanups), never a record pointing at missing files.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from .context import RegistryContext
from .errors import InvalidArgumentError, RegistryError
from .safe_delete import DeletionTarget, safe_delete_tree
from .storage.refs import remove_unreferenced

Freed = tuple[list[DeletionTarget], list[tuple[str, str]]]


def delete_then_remove_files(ctx: RegistryContext, work: Callable[[Session], Freed], *, leftover: str) -> None:
    """Run ``work`` (deletes rows, records the audit event) as one transaction, then remove what it freed.

    Args:
        work: returns ``(local folders checked by check_deletable, (uri, sha256) store objects)``
            to remove once the change committed; store objects go only when no record names them any more.
        leftover: the start of the error when a folder cannot be removed, e.g.
            ``"model als_v1 was deleted from the registry but its files remain"``.

    Raises:
        RegistryError: the rows are deleted but a folder could not be removed.
    """
    freed: list[Freed] = []

    def transaction(session: Session) -> bool:
        freed[:] = [work(session)]
        return True

    ctx.mutate(transaction)
    folders, objects = freed[0]
    if objects:
        remove_unreferenced(ctx, objects)
    for folder in folders:
        try:
            safe_delete_tree(folder, ctx.artifacts_root)
        except (OSError, InvalidArgumentError) as exc:
            raise RegistryError(f"{leftover} in {folder}: {exc}") from exc
