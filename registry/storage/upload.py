"""Putting model files into a store, and checking a folder that already lives in one.

* :func:`upload_files` uploads a validated local folder's files as content-addressed
  objects (skipping objects already there) before anything is recorded, so a model
  row never points at a missing object.
* :func:`inspect_remote_folder` validates a folder in a store without downloading
  its arrays: each ``.npy`` header comes from one ranged read and is laid into a
  sparse local stand-in of the right size, the small files (JSON, ``.npz``) are
  fetched, and the registry's own folder checks run on that stand-in. Every file is
  then hashed by streaming it.
* :func:`standin_folder` builds that stand-in; embeddings registration and
  ``cfreg register s3://...`` (reading the folder's JSON files) use it too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..artifacts import FileFingerprint, check_model_folder, model_files
from ..errors import InvalidArtifactsError
from . import store
from .store import ArtifactStore

logger = logging.getLogger(__name__)

NPY_HEADER_BYTES = 64 << 10  # far more than any .npy header (numpy caps them at 64 KiB in format 2.0+)
SMALL_FILE_BYTES = 256 << 20


def upload_files(artifact_store: ArtifactStore, folder: Path, prints: Iterable[FileFingerprint]) -> dict[str, str]:
    """Upload each fingerprinted file of ``folder``; returns ``{file_name: object uri}``.

    Raises:
        ArtifactStoreError: an upload failed (objects already uploaded stay: they are
            content-addressed and harmless, and a retry skips them).
        ChecksumMismatchError: a file changed after it was hashed.
    """
    uris: dict[str, str] = {}
    uploaded = 0
    for item in prints:
        uri, sent = artifact_store.upload(folder / item.file_name, item.sha256, item.size_bytes)
        uris[item.file_name] = uri
        uploaded += int(sent)
    logger.info("%s: %d of %d files uploaded to %s (the rest were already there)",
                folder, uploaded, len(uris), artifact_store.uri)
    return uris


def inspect_remote_folder(folder_uri: str, model_type: str) -> tuple[list[FileFingerprint], dict[str, str]]:
    """Validate a model folder in a store and fingerprint its files (see the module doc).

    Returns:
        ``(fingerprints, {file_name: object uri})`` of the files to record.

    Raises:
        InvalidArtifactsError: missing or invalid files.
        ArtifactStoreError: the store cannot be read.
    """
    folder_uri = folder_uri.rstrip("/")
    with standin_folder(folder_uri, lambda name: _relevant(name, model_type)) as (standin, objects):
        _, problems = check_model_folder(standin, model_type)
        if problems:
            raise InvalidArtifactsError(
                f"Invalid artifacts in {folder_uri!r} for model type {model_type!r}: " + "; ".join(problems)
            )
        names = model_files(standin, model_type)
    prints: list[FileFingerprint] = []
    uris: dict[str, str] = {}
    for name in names:
        print_, uris[name] = hash_remote(objects[name])
        prints.append(print_)
    return prints, uris


def hash_remote(info: store.ObjectInfo) -> tuple[FileFingerprint, str]:
    """``(fingerprint, uri)`` of one store object, hashed by streaming it."""
    sha256, size = store.hash_object(info.uri)
    return FileFingerprint(info.uri.rsplit("/", 1)[-1], size, sha256, -1), info.uri


@contextmanager
def standin_folder(folder_uri: str, wanted: Callable[[str], bool]) -> Iterator[tuple[Path, dict[str, store.ObjectInfo]]]:
    """A temporary local stand-in of a store folder, for the registry's local folder checks.

    Each wanted ``.npy`` becomes a sparse file of the object's size holding its real
    header (one ranged read); the other wanted files up to ``SMALL_FILE_BYTES`` are
    downloaded. Yields ``(stand-in folder, {file name: object info})`` of every file
    directly in the folder; the stand-in is deleted afterwards.

    Raises:
        ArtifactStoreError: the folder cannot be listed or read.
    """
    folder_uri = folder_uri.rstrip("/")
    objects = {info.uri.rsplit("/", 1)[-1]: info for info in store.list_folder(folder_uri)}
    with tempfile.TemporaryDirectory(prefix="cfreg-inspect-") as temp:
        standin = Path(temp)
        for name, info in objects.items():
            if not wanted(name):
                continue
            target = standin / name
            if name.endswith(".npy"):
                header = store.read_range(info.uri, 0, min(info.size, NPY_HEADER_BYTES))
                with open(target, "wb") as handle:
                    handle.write(header)
                os.truncate(target, info.size)  # sparse: the header's size check sees the real size
            elif info.size <= SMALL_FILE_BYTES:
                store.download(info.uri, target)
        yield standin, objects


def _relevant(name: str, model_type: str) -> bool:
    return name.startswith(f"{model_type}_") and "/" not in name
