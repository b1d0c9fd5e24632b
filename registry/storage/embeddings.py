"""BERT embeddings versions in the artifact store: upload, registration in place, reading through the cache.

The same rules as model files (see ``docs/fleet.md``):

* :func:`stage_embeddings` validates and fingerprints a folder's embeddings file
  before anything is recorded. On a registry with a store the file is uploaded as a
  content-addressed object (an object already there is not sent again); a folder
  that already lives in a store (``s3://...``) is checked from a ranged read of its
  ``.npy`` header, hashed by streaming and registered in place.
* :func:`embeddings_file` gives a version's file as a local path: on the local disk,
  or the verified object in the host's :class:`~registry.storage.cache.ArtifactCache`.
* Deleting a version's store object goes through :mod:`registry.storage.refs`
  (removed only when no model or embeddings version records it any more).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import FileFingerprint, fingerprint
from ..embeddings_files import NPY_FILE_NAMES, TORCH_FILE_NAMES, inspect_embeddings_folder
from ..errors import InvalidArtifactsError
from .cache import cached_object
from .store import ObjectInfo, is_uri
from .upload import hash_remote, standin_folder, upload_files

if TYPE_CHECKING:
    from ..context import RegistryContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedEmbeddings:
    """An embeddings file checked for registration.

    ``uri`` is the store object holding the file (None: the local file is recorded);
    ``uploaded`` says the file was put into the registry's store, whose
    ``embeddings_uri(version)`` then becomes the version's recorded path.
    """

    file: FileFingerprint
    uri: str | None
    uploaded: bool


def inspect_embeddings(ctx: RegistryContext, stored: str) -> tuple[str | None, tuple[int, ...] | None, list[str]]:
    """``(file name, shape, problems)`` of an embeddings folder on the disk or in a store.

    Raises:
        ArtifactStoreError: a store folder cannot be listed or read.
    """
    if not is_uri(stored):
        path, shape, problems = inspect_embeddings_folder(ctx.resolve(stored))
        return (path.name if path is not None else None), shape, problems
    name, shape, problems, _ = _inspect_remote(stored.rstrip("/"))
    return name, shape, problems


def _inspect_remote(location: str) -> tuple[str | None, tuple[int, ...] | None, list[str], dict[str, ObjectInfo]]:
    names = NPY_FILE_NAMES + TORCH_FILE_NAMES
    with standin_folder(location, lambda name: name in names) as (standin, objects):
        path, shape, problems = inspect_embeddings_folder(standin)
    # The checks name the stand-in folder; the user knows the store folder.
    return ((path.name if path is not None else None), shape,
            [problem.replace(str(standin), location) for problem in problems], objects)


def stage_embeddings(ctx: RegistryContext, stored: str, shape: tuple[int, int]) -> StagedEmbeddings:
    """Check, fingerprint and (with a store) upload the embeddings file of ``stored``.

    Args:
        ctx: the opened registry (its artifact store, if any, receives the file).
        stored: the folder as it will be recorded (relative to ``root``, absolute, or a store URI).
        shape: the expected ``(num_items, embedding_dim)``.

    Raises:
        InvalidArtifactsError: missing, unreadable, unsafe or mis-shaped file.
        ArtifactStoreError: the store cannot be read or written (nothing is recorded).
        ChecksumMismatchError: the file changed while it was uploaded.
    """
    location = stored.rstrip("/") if is_uri(stored) else str(ctx.resolve(stored))
    objects: dict[str, ObjectInfo] = {}
    if is_uri(stored):
        name, found, problems, objects = _inspect_remote(location)
    else:
        name, found, problems = inspect_embeddings(ctx, stored)
    if problems or name is None:
        raise InvalidArtifactsError(f"Invalid embeddings in {location!r}: " + "; ".join(problems))
    if found != shape:
        raise InvalidArtifactsError(
            f"{location}/{name}: array shape {found} does not match num_items x embedding_dim = "
            f"{shape}; pass the real sizes or regenerate the file"
        )
    if is_uri(stored):
        # Registered in place: the object itself is recorded, nothing is copied.
        file_print, uri = hash_remote(objects[name])
        return StagedEmbeddings(file_print, uri, False)
    folder = ctx.resolve(stored)
    file_print = fingerprint(folder / name, within=folder)
    artifact_store = ctx.artifact_store
    if artifact_store is None:
        return StagedEmbeddings(file_print, None, False)
    # Uploaded before anything is recorded: a failed upload leaves no row behind.
    uris = upload_files(artifact_store, folder, [file_print])
    return StagedEmbeddings(file_print, uris[name], True)


def recorded_path(ctx: RegistryContext, stored: str, staged: StagedEmbeddings, version: str) -> str:
    """The path recorded for a version: its address in the registry's store when uploaded, else as given."""
    artifact_store = ctx.artifact_store
    if staged.uploaded and artifact_store is not None:
        return artifact_store.embeddings_uri(version)
    return stored.rstrip("/") if is_uri(stored) else stored


@contextmanager
def embeddings_file(ctx: RegistryContext, path: str, file_name: str, uri: str | None, sha256: str | None,
                    size: int | None, cache_dir: str | os.PathLike[str] | None = None,
                    cache_bytes: int | None = None) -> Iterator[tuple[Path, Path]]:
    """A version's recorded file as ``(local file, folder it must stay in)`` while the block runs.

    A store object is fetched into the host's artifact cache (downloaded once,
    verified against the recorded size and sha256, pinned while the block runs),
    exactly as the model loader reads store-backed models.

    Raises:
        InvalidArtifactsError: a store object without a recorded checksum.
        ArtifactStoreError / ChecksumMismatchError: the download failed or did not match the record.
    """
    if uri is None:
        folder = ctx.resolve(path)
        yield folder / file_name, folder
        return
    if sha256 is None or size is None:
        raise InvalidArtifactsError(f"{uri}: no size and sha256 recorded; re-register the embeddings")
    with cached_object(uri, sha256, size, cache_dir, cache_bytes) as local:
        yield local, local.parent


def store_object(uri: str | None, sha256: str | None) -> list[tuple[str, str]]:
    """The ``(uri, sha256)`` store object a deleted version leaves for :func:`refs.remove_unreferenced`."""
    return [(uri, sha256)] if uri is not None and sha256 is not None else []
