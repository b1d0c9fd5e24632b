"""Artifact stores: a registry's files on object storage (S3, GCS, Azure, a ``file://`` folder) through fsspec.

A store is a URI prefix. Uploaded files are content-addressed objects::

    {store}/objects/sha256/{sha[:2]}/{sha256}

so a file already in the store (same bytes, whichever model or embeddings version
brought it) is never uploaded twice, and an object never changes once written.

Credentials come from where the fsspec backend looks (environment, profiles, instance
roles); the registry never stores them. ``$CFREG_STORAGE_OPTIONS`` may hold a JSON object
of extra fsspec options (e.g. ``{"endpoint_url": "http://minio:9000"}``), applied to
every store URI of the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ArtifactStoreError, ChecksumMismatchError, InvalidArgumentError

logger = logging.getLogger(__name__)

ENV_STORAGE_OPTIONS = "CFREG_STORAGE_OPTIONS"
OBJECTS_PREFIX = "objects/sha256"
MODELS_PREFIX = "models"
EMBEDDINGS_PREFIX = "embeddings"
CHUNK_BYTES = 8 << 20
STREAM_READ_BYTES = 1 << 20  # the most one read of a streamed GET returns (it returns what has arrived)


def is_uri(path: str | os.PathLike[str] | None) -> bool:
    """True for a URI with a scheme (``s3://...``, ``file:///...``): read through fsspec, not ``open``."""
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].replace("+", "").isalnum()


def normalize_store_uri(uri: str | os.PathLike[str]) -> str:
    """The canonical form of a store URI: a local folder becomes ``file:///abs/path``; no trailing slash.

    Raises:
        InvalidArgumentError: empty, or a scheme fsspec does not know / whose backend is not installed.
    """
    text = os.fspath(uri).strip() if isinstance(uri, (str, os.PathLike)) else ""
    if not text:
        raise InvalidArgumentError(f"artifact store must be a URI such as s3://bucket/prefix or a folder, got {uri!r}")
    if not is_uri(text):
        text = Path(text).expanduser().absolute().as_uri()
    text = text.rstrip("/")
    protocol = text.split("://", 1)[0]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise InvalidArgumentError(
            f"artifact store {text!r}: the {protocol}:// backend is not installed ({exc}); "
            "for S3: pip install 'cf-model-registry[s3]'"
        ) from None
    except ValueError:
        raise InvalidArgumentError(f"artifact store {text!r}: unknown protocol {protocol!r}") from None
    return text


def storage_options() -> dict[str, Any]:
    """Extra fsspec options from ``$CFREG_STORAGE_OPTIONS`` (a JSON object), or ``{}``."""
    raw = os.environ.get(ENV_STORAGE_OPTIONS)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgumentError(f"${ENV_STORAGE_OPTIONS} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"${ENV_STORAGE_OPTIONS} must be a JSON object")
    return value


def filesystem(uri: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for a URI."""
    try:
        from fsspec.core import url_to_fs

        return url_to_fs(uri, **storage_options())
    except ImportError as exc:
        raise ArtifactStoreError(f"{uri}: the fsspec backend is not installed ({exc}); "
                                 "for S3: pip install 'cf-model-registry[s3]'") from exc


@dataclass(frozen=True)
class ObjectInfo:
    """An object's URI and size in bytes."""

    uri: str
    size: int


def object_size(uri: str) -> int | None:
    """The object's size in bytes, or None when it does not exist.

    Raises:
        ArtifactStoreError: the store cannot be reached.
    """
    fs, path = filesystem(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # backends raise their own types (botocore, aiohttp, OSError)
        raise ArtifactStoreError(f"{uri}: cannot be read from the artifact store ({type(exc).__name__}: {exc})") from exc
    if info.get("type") == "directory":
        return None
    return int(info.get("size") or 0)


def list_folder(uri: str) -> list[ObjectInfo]:
    """The files directly inside a folder URI (sorted by name).

    Raises:
        ArtifactStoreError: the store cannot be reached or the folder does not exist.
    """
    fs, path = filesystem(uri)
    try:
        entries = fs.ls(path, detail=True, refresh=True) if _accepts_refresh(fs) else fs.ls(path, detail=True)
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such folder in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: cannot be listed ({type(exc).__name__}: {exc})") from exc
    base = uri.rstrip("/")
    found = [ObjectInfo(f"{base}/{entry['name'].rstrip('/').rsplit('/', 1)[-1]}", int(entry.get("size") or 0))
             for entry in entries if entry.get("type") == "file"]
    return sorted(found, key=lambda item: item.uri)


def _accepts_refresh(fs: Any) -> bool:
    return "s3" in _protocols(fs) or "gs" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def read_range(uri: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of an object (one ranged GET on S3)."""
    fs, path = filesystem(uri)
    try:
        return bytes(fs.cat_file(path, start=start, end=end))
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such object in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from exc


def hash_object(uri: str) -> tuple[str, int]:
    """``(sha256, size)`` of an object, streamed (never held in memory whole)."""
    fs, path = filesystem(uri)
    digest = hashlib.sha256()
    size = 0
    try:
        with fs.open(path, "rb", block_size=CHUNK_BYTES) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such object in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from exc
    return digest.hexdigest(), size


def download(uri: str, target: Path) -> None:
    """Copy an object to a local file (``target`` is overwritten; the caller renames it into place)."""
    fs, path = filesystem(uri)
    try:
        fs.get_file(path, str(target))
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such object in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: download failed ({type(exc).__name__}: {exc})") from exc


def download_hashed(uri: str, target: Path) -> tuple[str, int]:
    """Copy an object to a local file, hashing the bytes as they arrive; returns ``(sha256, size)``.

    One pass over the bytes: each chunk read from the store is hashed and written to
    ``target`` (overwritten; the caller renames it into place once the digest matches).
    Stores whose fsspec backend streams asynchronously (s3fs, gcsfs) are read as one
    streamed GET on fsspec's event loop; the others through a buffered file.

    Raises:
        ArtifactStoreError: no such object, or the download failed.
    """
    fs, path = filesystem(uri)
    try:
        if _streams(fs):
            from fsspec.asyn import sync

            return sync(fs.loop, _stream_to_file, fs, path, target)
        return _copy_to_file(fs, path, target)
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such object in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: download failed ({type(exc).__name__}: {exc})") from exc


def _streams(fs: Any) -> bool:
    """True when ``fs`` is an async fsspec filesystem that implements ``open_async``."""
    try:
        from fsspec.asyn import AsyncFileSystem
    except ImportError:
        return False
    return isinstance(fs, AsyncFileSystem) and type(fs).open_async is not AsyncFileSystem.open_async


async def _stream_to_file(fs: Any, path: str, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    handle = await fs.open_async(path, "rb")
    try:
        with open(target, "wb") as sink:
            while chunk := await handle.read(STREAM_READ_BYTES):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
    finally:
        await handle.close()
    return digest.hexdigest(), size


def _copy_to_file(fs: Any, path: str, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb", block_size=CHUNK_BYTES) as source, open(target, "wb") as sink:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            sink.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def remove_object(uri: str) -> bool:
    """Delete an object; False when it did not exist."""
    fs, path = filesystem(uri)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: cannot be deleted ({type(exc).__name__}: {exc})") from exc
    return True


class ArtifactStore:
    """A registry's artifact store: content-addressed objects under one URI prefix.

    Args:
        uri: ``s3://bucket/prefix``, ``gs://...``, ``file:///...`` or a local folder.
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.uri = normalize_store_uri(uri)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    def object_uri(self, sha256: str) -> str:
        """Where the object with this sha256 lives."""
        return f"{self.uri}/{OBJECTS_PREFIX}/{sha256[:2]}/{sha256}"

    def model_uri(self, model_id: str) -> str:
        """The address recorded as an uploaded model's ``path`` (its files are content-addressed objects)."""
        return f"{self.uri}/{MODELS_PREFIX}/{model_id}"

    def embeddings_uri(self, version: str) -> str:
        """The address recorded as an uploaded embeddings version's ``path``."""
        return f"{self.uri}/{EMBEDDINGS_PREFIX}/{version}"

    def owns(self, uri: str) -> bool:
        """True when ``uri`` is one of this store's content-addressed objects."""
        return uri.startswith(f"{self.uri}/{OBJECTS_PREFIX}/")

    def upload(self, local: Path, sha256: str, size: int) -> tuple[str, bool]:
        """Put a local file into the store under its sha256; ``(object uri, uploaded)``.

        An object already there with the same size is not uploaded again. The bytes
        sent are hashed while sending; if they differ from ``sha256`` (the file changed
        since it was hashed) the object is removed and ChecksumMismatchError raised.
        On a ``file://`` store the object is written under a temporary name and renamed;
        an S3/GCS object only appears once its upload completed.

        Raises:
            ArtifactStoreError: the store cannot be written.
            ChecksumMismatchError: the file changed while being uploaded.
        """
        uri = self.object_uri(sha256)
        if object_size(uri) == size:
            logger.debug("object %s already in the store; not uploaded", uri)
            return uri, False
        fs, path = filesystem(uri)
        local_store = "file" in _protocols(fs) or "local" in _protocols(fs)
        target = f"{path}.{uuid.uuid4().hex}.tmp" if local_store else path
        digest = hashlib.sha256()
        try:
            fs.makedirs(fs._parent(path), exist_ok=True)
            with open(local, "rb") as source, fs.open(target, "wb") as sink:
                while chunk := source.read(CHUNK_BYTES):
                    digest.update(chunk)
                    sink.write(chunk)
            if digest.hexdigest() != sha256:
                _quiet_remove(fs, target)
                raise ChecksumMismatchError(f"{local} changed while it was uploaded (sha256 {digest.hexdigest()}, "
                                            f"expected {sha256}); nothing was registered")
            if local_store:
                os.replace(target, path)
        except ChecksumMismatchError:
            raise
        except OSError as exc:
            if local_store:
                _quiet_remove(fs, target)
            raise ArtifactStoreError(f"upload of {local} to {uri} failed: {exc}") from exc
        except Exception as exc:
            if local_store:
                _quiet_remove(fs, target)
            raise ArtifactStoreError(f"upload of {local} to {uri} failed ({type(exc).__name__}: {exc})") from exc
        logger.info("uploaded %s to %s (%d bytes)", local, uri, size)
        return uri, True


def _quiet_remove(fs: Any, path: str) -> None:
    try:
        fs.rm_file(path)
    except Exception as exc:  # best effort: the temp object is unreferenced either way
        logger.debug("could not remove %s: %s", path, exc)


@contextmanager
def open_object(uri: str) -> Iterator[IO[bytes]]:
    """Open an object for reading (streamed)."""
    fs, path = filesystem(uri)
    try:
        handle = fs.open(path, "rb", block_size=CHUNK_BYTES)
    except FileNotFoundError:
        raise ArtifactStoreError(f"{uri}: no such object in the artifact store") from None
    except Exception as exc:
        raise ArtifactStoreError(f"{uri}: cannot be opened ({type(exc).__name__}: {exc})") from exc
    with handle:
        yield handle
