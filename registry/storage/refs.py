"""Reference counting of store objects: what may be deleted once a record is gone.

A store object is shared by every model and embeddings version whose files have
its bytes (content addressing: the same sha256 in a store is the same object URI),
so it is deleted only when no remaining model file or embeddings version records
that object. A record of the same bytes elsewhere (a local file, a folder
registered in place) does not keep it: it would be an object nothing points at.
Deletion happens after the database change committed: a
crash in between leaves an unreferenced object (harmless, found by
``cfreg artifacts verify``), never a record pointing at a missing object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ArtifactStoreError, RegistryError
from ..models import ArtifactFile, BertEmbedding
from . import store

if TYPE_CHECKING:
    from ..context import RegistryContext

logger = logging.getLogger(__name__)


def store_objects_of_model(session: Session, model_id: str) -> list[tuple[str, str]]:
    """``(uri, sha256)`` of the model's files that live in a store."""
    rows = session.execute(
        select(ArtifactFile.uri, ArtifactFile.sha256).where(ArtifactFile.model_id == model_id, ArtifactFile.uri.is_not(None))
    )
    return [(uri, sha) for uri, sha in rows if uri is not None]  # never None (the WHERE above); narrows the type


def referenced_objects(session: Session, uris: Iterable[str]) -> set[str]:
    """The object URIs among ``uris`` that some model file or embeddings version still records."""
    wanted = sorted(set(uris))
    if not wanted:
        return set()
    found = set(session.scalars(select(ArtifactFile.uri).where(ArtifactFile.uri.in_(wanted))))
    found |= set(session.scalars(select(BertEmbedding.uri).where(BertEmbedding.uri.in_(wanted))))
    return {uri for uri in found if uri is not None}


def remove_unreferenced(ctx: RegistryContext, objects: Iterable[tuple[str, str]]) -> list[str]:
    """Delete the ``(uri, sha256)`` objects no record names any more; returns the URIs deleted.

    Raises:
        RegistryError: an object could not be deleted (the registry change is already committed).
    """
    objects = list(dict.fromkeys(objects))
    still = ctx.read(lambda session: referenced_objects(session, (uri for uri, _ in objects)))
    deleted: list[str] = []
    for uri, sha in objects:
        if uri in still:
            logger.info("kept %s (sha256 %s): another model or embeddings version records it", uri, sha)
            continue
        try:
            if store.remove_object(uri):
                deleted.append(uri)
        except ArtifactStoreError as exc:
            raise RegistryError(f"the registry change is committed but {uri} could not be deleted: {exc}") from exc
    return deleted
