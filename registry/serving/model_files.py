"""A registered model's files: what the registry recorded, and reading them into a :class:`ModelState`.

The registry records each file's size and sha256 at registration. Reading
checks the files against that record as far as ``verify`` asks:

* ``'none'``: only that the arrays are valid numeric ``.npy`` files;
* ``'size'``: also that every recorded file still has its recorded size;
* ``'full'``: also the sha256 of every recorded file, computed while reading.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select

from .. import artifacts, fsio
from ..context import GENERATION_QUERY
from ..errors import ChecksumMismatchError, InvalidArtifactsError
from ..interactions import Interactions, interactions_file, read_interactions
from ..models import CURRENT_BEST_ALIAS, Alias, ArtifactFile, Model, Settings, utcnow
from ..timestamps import format_timestamp as iso
from .model_state import CacheKey, FileStamp, ModelState

logger = logging.getLogger(__name__)

VERIFY_MODES = ("none", "size", "full")


@dataclass(frozen=True)
class ModelRecord:
    """What the registry says about one model: where it lives and its recorded files."""

    model_id: str
    model_type: str
    version: str
    path: str
    files: Mapping[str, tuple[int, str]]  # file name -> (size_bytes, sha256)
    key: CacheKey
    uris: Mapping[str, str] = field(default_factory=dict)  # file name -> store object (files not on local disk)

    @property
    def remote(self) -> bool:
        """True when the model's files live in an artifact store (read through the loader's cache)."""
        return bool(self.uris)


# One statement each, so every read is one consistent snapshot on both backends.
_FILE_COLUMNS = (Model.model_id, Model.model_type, Model.version, Model.path,
                 ArtifactFile.file_name, ArtifactFile.size_bytes, ArtifactFile.sha256, ArtifactFile.uri)
RECORD_QUERY = (
    select(*_FILE_COLUMNS)
    .outerjoin(ArtifactFile, ArtifactFile.model_id == Model.model_id)
    .where(Model.model_id == bindparam("model_id"))
)
CURRENT_QUERY = (
    select(Settings.generation, Settings.current_model_id, *_FILE_COLUMNS)
    .select_from(Settings)
    .outerjoin(Model, Model.model_id == Settings.current_model_id)
    .outerjoin(ArtifactFile, ArtifactFile.model_id == Model.model_id)
    .where(Settings.id == 1)
)

def pointer_queries(alias: str) -> tuple[Any, Any, dict[str, object] | None]:
    """``(change-check query, current-record query, parameters)`` for the alias a loader follows."""
    if alias == CURRENT_BEST_ALIAS:
        return GENERATION_QUERY, CURRENT_QUERY, None
    return ALIAS_GENERATION_QUERY, ALIAS_CURRENT_QUERY, {"alias": alias}


# The same two reads for a named alias (``:alias``): the loader following ``challenger``.
ALIAS_GENERATION_QUERY = (
    select(Settings.generation, Alias.model_id)
    .select_from(Settings)
    .outerjoin(Alias, Alias.name == bindparam("alias"))
    .where(Settings.id == 1)
)
ALIAS_CURRENT_QUERY = (
    select(Settings.generation, Alias.model_id, *_FILE_COLUMNS)
    .select_from(Settings)
    .outerjoin(Alias, Alias.name == bindparam("alias"))
    .outerjoin(Model, Model.model_id == Alias.model_id)
    .outerjoin(ArtifactFile, ArtifactFile.model_id == Model.model_id)
    .where(Settings.id == 1)
)


def record_from_rows(rows: list[tuple[Any, ...]]) -> ModelRecord | None:
    """A record from ``(model_id, model_type, version, path, file_name, size, sha256, uri)`` rows.

    Returns:
        None when there are no rows or the model columns are null (no such model).
    """
    if not rows or rows[0][0] is None:
        return None
    model_id, model_type, version, path = rows[0][:4]
    files = {name: (int(size), sha256) for *_, name, size, sha256, _ in rows if name is not None}
    uris = {name: uri for *_, name, _, _, uri in rows if name is not None and uri is not None}
    key: CacheKey = (model_id, tuple(sorted((name, sha) for name, (_, sha) in files.items())))
    return ModelRecord(model_id, model_type, version, path, files, key, uris)


def model_file_names(record: ModelRecord) -> list[str]:
    """Every file of the model to check and watch: ``U``, ``V`` first, then the other
    standard files, id maps and the interactions file, then the rest of the recorded
    files (e.g. the extra files of a type added with :func:`registry.artifacts.register_model_type`)."""
    names = _read_file_names(record.model_type)
    return names + sorted(set(record.files) - set(names))


def _read_file_names(prefix: str) -> list[str]:
    """The files :func:`read_model` reads itself (the others are only checked)."""
    return [*artifacts.standard_model_files(prefix), *artifacts.id_map_files(prefix).values(), interactions_file(prefix)]


def stat_files(record: ModelRecord, folder: Path, verify: str) -> tuple[dict[str, Path], tuple[FileStamp, ...]]:
    """The model files present in ``folder`` and their stamps.

    Every recorded file is checked (see :func:`model_file_names`); the standard
    files and id maps that were not recorded (a legacy import) are used when present.

    Args:
        record: the model as registered.
        folder: its resolved artifact folder.
        verify: with ``'size'`` or ``'full'``, recorded sizes are checked.

    Returns:
        ``(paths by file name, stamps)`` of the files that exist.

    Raises:
        InvalidArtifactsError: ``U``/``V`` or a recorded file is missing or unreadable.
        ChecksumMismatchError: a file's size differs from the recorded one.
    """
    found: dict[str, Path] = {}
    stamps: list[FileStamp] = []
    for position, name in enumerate(model_file_names(record)):
        path = folder / name
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if position < 2 or name in record.files:
                raise InvalidArtifactsError(
                    f"{path}: file of model {record.model_id!r} is missing (registered path "
                    f"{record.path!r}); restore it or re-register the model"
                ) from None
            continue
        except OSError as exc:
            raise InvalidArtifactsError(f"{path}: cannot be read ({exc})") from exc
        recorded = record.files.get(name)
        if verify != "none" and recorded is not None and recorded[0] != info.st_size:
            raise ChecksumMismatchError(
                f"{path}: {info.st_size} bytes but {recorded[0]} were recorded at registration; "
                "restore the file or re-register the model with overwrite=True"
            )
        found[name] = path
        stamps.append((name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
    return found, tuple(stamps)


def read_model(record: ModelRecord, folder: Path, found: Mapping[str, Path], stamps: tuple[FileStamp, ...], *,
               verify: str, mmap: bool) -> ModelState:
    """Read and verify the files :func:`stat_files` found into a :class:`ModelState`.

    Args:
        record: the model as registered.
        folder: its resolved artifact folder.
        found: the paths :func:`stat_files` returned.
        stamps: the stamps :func:`stat_files` returned, kept for reload checks.
        verify: ``'full'`` checks the sha256 of every recorded file.
        mmap: map the ``.npy`` files read-only instead of reading them.

    Raises:
        InvalidArtifactsError: a file is invalid, or the shapes disagree.
        ChecksumMismatchError: a file's sha256 (``'full'``: of every recorded file)
            differs from the recorded one.
    """
    with fsio.folders_resolved_once():
        return _read_model(record, folder, found, stamps, verify=verify, mmap=mmap)


def _read_model(record: ModelRecord, folder: Path, found: Mapping[str, Path], stamps: tuple[FileStamp, ...], *,
                verify: str, mmap: bool) -> ModelState:
    prefix = record.model_type
    U = _load_array(found[f"{prefix}_U.npy"], folder, record, verify, mmap)
    V = _load_array(found[f"{prefix}_V.npy"], folder, record, verify, mmap)
    params = _load_json(found.get(f"{prefix}_params.json"), folder, record, verify, dict, {})
    metadata = _load_json(found.get(f"{prefix}_metadata.json"), folder, record, verify, dict, {})
    user_ids = _load_json(found.get(f"{prefix}_user_ids.json"), folder, record, verify, list, None)
    item_ids = _load_json(found.get(f"{prefix}_item_ids.json"), folder, record, verify, list, None)
    _check_shapes(record, U, V, user_ids, item_ids)
    seen_name = interactions_file(prefix)
    # Only an interactions file registered with the model (or any, for a legacy import
    # without recorded files): one dropped into the folder later was never validated.
    seen_path = found.get(seen_name) if seen_name in record.files or not record.files else None
    interactions = _load_interactions(seen_path, folder, record, verify, U.shape[0], V.shape[0])
    if verify == "full":
        # Files the loader does not read (a custom type's extras) are still part of the model.
        read = set(_read_file_names(prefix))
        for name, path in found.items():
            if name not in read and name in record.files:
                artifacts.verify_sha256(path, record.files[name][1], within=folder)
    metadata = {**metadata, "model_id": record.model_id, "model_type": record.model_type,
                "version": record.version, "path": record.path}
    logger.info("loaded model %s from %s (%d bytes, verify=%s, mmap=%s)",
                record.model_id, folder, U.nbytes + V.nbytes, verify, mmap)
    return ModelState(
        model_id=record.model_id, model_type=record.model_type, version=record.version, U=U, V=V,
        params=params, metadata=metadata, loaded_at=iso(utcnow()) or "", path=record.path,
        user_ids=user_ids, item_ids=item_ids, folder=str(folder), checksums=record.key[1],
        file_stamps=stamps, interactions=interactions,
    )


def files_unchanged(state: ModelState) -> bool:
    """True when every file the state was loaded from still has the same size, times and inode."""
    for name, size, mtime_ns, ctime_ns, inode in state.file_stamps:
        try:
            info = os.stat(os.path.join(state.folder, name))
        except OSError:
            return False
        if info.st_size != size or info.st_mtime_ns != mtime_ns or info.st_ctime_ns != ctime_ns or info.st_ino != inode:
            return False
    return True


def _expected_sha256(path: Path, record: ModelRecord, verify: str) -> str | None:
    if verify != "full":
        return None
    recorded = record.files.get(path.name)
    if recorded is None:
        logger.warning("%s has no recorded checksum (model %s); loaded without verification", path, record.model_id)
        return None
    return recorded[1]


def _load_array(path: Path, folder: Path, record: ModelRecord, verify: str, mmap: bool) -> np.ndarray:
    # With mmap the file is hashed first and the same open file is then mapped (a mapping is read lazily).
    array = artifacts.load_npy(path, mmap=mmap, within=folder, expected_sha256=_expected_sha256(path, record, verify))
    array.flags.writeable = False
    return array


def _load_json(path: Path | None, folder: Path, record: ModelRecord, verify: str, kind: type, default: Any) -> Any:
    if path is None:
        return default
    sha256 = _expected_sha256(path, record, verify)
    if sha256:
        value = artifacts.read_json_verified(path, sha256, within=folder)
    else:
        value = artifacts.read_json_file(path, within=folder)
    if not isinstance(value, kind):
        raise InvalidArtifactsError(f"{path}: must hold a JSON {'object' if kind is dict else 'list'}")
    return value


def _load_interactions(path: Path | None, folder: Path, record: ModelRecord, verify: str,
                       num_users: int, num_items: int) -> Interactions | None:
    """The model's training interactions, checked against its shapes (and sha256 under ``'full'``),
    read from inside ``folder`` like the model's other files."""
    if path is None:
        return None
    sha256 = _expected_sha256(path, record, verify)
    if sha256 is not None:
        artifacts.verify_sha256(path, sha256, within=folder)
    interactions = read_interactions(path, num_users, num_items, within=folder)
    interactions.indptr.flags.writeable = False
    interactions.indices.flags.writeable = False
    return interactions


def _check_shapes(record: ModelRecord, U: np.ndarray, V: np.ndarray,
                  user_ids: list[Any] | None, item_ids: list[Any] | None) -> None:
    where = f"model {record.model_id!r} at {record.path!r}"
    if U.ndim != 2 or V.ndim != 2:
        raise InvalidArtifactsError(f"{where}: U and V must be 2-D, got shapes {U.shape} and {V.shape}")
    if U.shape[1] != V.shape[1]:
        raise InvalidArtifactsError(f"{where}: factor counts differ (U has {U.shape[1]}, V has {V.shape[1]})")
    for name, ids, rows in (("user_ids", user_ids, U.shape[0]), ("item_ids", item_ids, V.shape[0])):
        if ids is not None and len(ids) != rows:
            raise InvalidArtifactsError(f"{where}: {record.model_type}_{name}.json has {len(ids)} ids for {rows} rows")
