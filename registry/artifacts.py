"""Artifact files: required files per model type, safe ``.npy`` reading, checksums, confinement.

Every file the registry reads is opened by :func:`open_regular_file`: without
blocking, checked on the open descriptor to be a regular file within a size
limit, and (for a model's files) confined to the model's folder. ``.npy`` files
are only ever read through :func:`read_npy_header` (validation, no allocation)
and :func:`load_npy` (size checked against the header before any allocation,
never pickles). Deletion goes through :func:`safe_delete_tree`, which refuses
anything that does not resolve inside the artifacts root.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import (
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    UnsafeFileError,
)
from .fsio import open_regular_file, read_regular_file
from .interactions import interactions_file, read_interactions
from .npy_header import read_array_header
from .safe_delete import DeletionTarget, check_deletable, safe_delete_tree  # noqa: F401 - importable from here, as before
from .user_eval import user_eval_file, user_eval_problems

logger = logging.getLogger(__name__)


def standard_model_files(model_type: str) -> list[str]:
    """The doc's four files of a type: ``{type}_U.npy``, ``_V.npy``, ``_params.json``, ``_metadata.json``."""
    return [f"{model_type}_U.npy", f"{model_type}_V.npy", f"{model_type}_params.json", f"{model_type}_metadata.json"]


# The doc's three model types; extend with register_model_type().
REQUIRED_MODEL_FILES: dict[str, list[str]] = {
    model_type: standard_model_files(model_type) for model_type in ("als", "bpr", "bert_als")
}
ID_MAP_SUFFIXES = ("user_ids", "item_ids")
MAX_NPY_BYTES = int(os.environ.get("CFREG_MAX_NPY_BYTES", 8 << 30))
MAX_JSON_FILE_BYTES = 16 << 20
# Any other artifact file (a custom type's extra files, .pt embeddings): hashed, never parsed.
MAX_ARTIFACT_BYTES = MAX_NPY_BYTES
NUMERIC_DTYPE_KINDS = "fiu"


def register_model_type(model_type: str, required_files: list[str] | None = None) -> list[str]:
    """Teach the registry a new model type (for this process).

    Args:
        model_type: the new type, e.g. ``"ease"``.
        required_files: file names that must exist in its artifact folder. The
            default is the doc's four files ``{type}_U.npy``, ``{type}_V.npy``,
            ``{type}_params.json``, ``{type}_metadata.json``; ``_U``/``_V`` are
            the embeddings the loader serves.

    Returns:
        The required file list now in force for that type.
    """
    from .validation import MODEL_TYPE_MAX_LENGTH, validate_identifier

    validate_identifier(model_type, "model_type", MODEL_TYPE_MAX_LENGTH)
    files = list(required_files) if required_files else standard_model_files(model_type)
    if f"{model_type}_U.npy" not in files or f"{model_type}_V.npy" not in files:
        raise InvalidArgumentError(f"required files of {model_type!r} must include {model_type}_U.npy and {model_type}_V.npy")
    REQUIRED_MODEL_FILES[model_type] = files
    return files


def required_files(model_type: str) -> list[str]:
    """The required file names of a type; ``InvalidArgumentError`` for an unknown type."""
    try:
        return REQUIRED_MODEL_FILES[model_type]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"Unknown model_type {model_type!r}: known types are {sorted(REQUIRED_MODEL_FILES)} "
            "(add one with registry.register_model_type)"
        ) from None


def id_map_files(model_type: str) -> dict[str, str]:
    """Optional id-map file names of a type: ``{"user_ids": "als_user_ids.json", ...}``."""
    return {suffix: f"{model_type}_{suffix}.json" for suffix in ID_MAP_SUFFIXES}


def _digest_handle(handle: BinaryIO, path: Path, max_bytes: int, chunk: int = 1 << 20) -> str:
    """sha256 of an open file read to its end, refusing more than ``max_bytes``."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    total = 0
    while count := handle.readinto(buffer):  # type: ignore[attr-defined]
        total += count
        if total > max_bytes:
            raise UnsafeFileError(f"{path}: grew beyond the limit of {max_bytes} bytes while being read")
        digest.update(view[:count])
    return digest.hexdigest()


# --------------------------------------------------------------------------- .npy


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: Any
    fortran_order: bool
    data_offset: int
    file_size: int


def read_npy_header(path: Path, *, max_bytes: int = MAX_NPY_BYTES, within: Path | None = None) -> NpyHeader:
    """Read and check a ``.npy`` header without loading the array.

    Refuses object/non-numeric dtypes, files whose size disagrees with the header
    (truncated files, headers claiming terabytes) or exceeds ``max_bytes``, and
    anything :func:`open_regular_file` refuses (``within``: the model's folder).
    """
    with _open_npy(path, max_bytes, within) as handle:
        return _read_npy_header(handle, path, max_bytes)


def load_npy(path: Path, *, mmap: bool = False, max_bytes: int = MAX_NPY_BYTES, within: Path | None = None,
             expected_sha256: str | None = None) -> Any:
    """Load a validated numeric ``.npy``: header checked first, data never unpickled.

    The header is parsed once; the data is then read from the same open file
    into a preallocated array, or mapped read-only (``mmap=True``).

    Args:
        path: the file.
        mmap: map the data read-only instead of reading it.
        max_bytes: the largest file accepted.
        within: the folder the file must stay in (see :func:`open_regular_file`).
        expected_sha256: check the file's sha256 first (the mapping is made from the
            same open file that was hashed); :func:`load_npy_verified` does this in
            one pass when not mapping.

    Raises:
        InvalidArtifactsError: unreadable, unsafe, non-numeric or mis-sized file.
        ChecksumMismatchError: the sha256 differs from ``expected_sha256``.
    """
    import numpy as np

    if expected_sha256 is not None and not mmap:
        return load_npy_verified(path, expected_sha256, max_bytes=max_bytes, within=within)
    with _open_npy(path, max_bytes, within) as handle:
        header = _read_npy_header(handle, path, max_bytes)
        try:
            if expected_sha256 is not None:
                handle.seek(0)
                verify_open_sha256(handle, path, expected_sha256, max_bytes=max_bytes)
            if mmap:
                # The open handle, not the path: the mapping is of the file whose header was checked.
                return np.memmap(handle, dtype=header.dtype, mode="r", offset=header.data_offset,
                                 shape=header.shape, order="F" if header.fortran_order else "C")
            return _read_npy_data(handle, header, path)
        except InvalidArtifactsError:
            raise
        except (ValueError, EOFError, OSError, MemoryError) as exc:
            raise InvalidArtifactsError(f"{path}: could not be loaded ({exc})") from exc


def load_npy_verified(path: Path, expected_sha256: str, *, max_bytes: int = MAX_NPY_BYTES, chunk: int = 1 << 24,
                      within: Path | None = None) -> Any:
    """Read a ``.npy`` and check its sha256 in one pass (no second read of the file)."""
    with _open_npy(path, max_bytes, within) as handle:
        header = _read_npy_header(handle, path, max_bytes)
        try:
            handle.seek(0)
            digest = hashlib.sha256(handle.read(header.data_offset))
            array = _read_npy_data(handle, header, path, digest, chunk)
        except OSError as exc:
            raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc
    if digest.hexdigest() != expected_sha256:
        raise _checksum_mismatch(path, digest.hexdigest(), expected_sha256)
    return array


def _open_npy(path: Path, max_bytes: int, within: Path | None) -> io.BufferedReader:
    try:
        return open_regular_file(path, max_bytes=max_bytes, within=within)
    except OSError as exc:
        raise InvalidArtifactsError(f"{path}: not a readable .npy file ({exc})") from exc


def _read_npy_header(handle: BinaryIO, path: Path, max_bytes: int | None = None) -> NpyHeader:
    """The checked header of an open ``.npy``; leaves ``handle`` at the first data byte."""
    try:
        size = os.fstat(handle.fileno()).st_size
        shape, fortran, dtype = read_array_header(handle)
        offset = handle.tell()
    except (ValueError, EOFError, OSError, SyntaxError, MemoryError, RecursionError) as exc:
        raise InvalidArtifactsError(f"{path}: not a readable .npy file ({exc})") from exc
    if dtype.hasobject or dtype.kind not in NUMERIC_DTYPE_KINDS:
        raise InvalidArtifactsError(f"{path}: dtype {dtype} refused (numeric arrays only, never pickled objects)")
    if any(n < 0 for n in shape):
        raise InvalidArtifactsError(f"{path}: header claims negative dimensions {shape} (forged or corrupt file)")
    # Python ints: np.prod in int64 wraps, so a forged (2**32, 2**32) header would "match" an empty file.
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != size:
        raise InvalidArtifactsError(
            f"{path}: header describes {nbytes} data bytes but the file holds {size - offset} (truncated or forged)"
        )
    if max_bytes is not None and size > max_bytes:
        raise InvalidArtifactsError(f"{path}: {size} bytes exceeds the limit of {max_bytes}")
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran), offset, size)


def _read_npy_data(handle: io.BufferedReader, header: NpyHeader, path: Path, digest: Any = None, chunk: int = 1 << 24) -> Any:
    """The data after a checked header, read into a new array (and fed to ``digest`` when given)."""
    import numpy as np

    array = np.empty(header.shape, dtype=header.dtype, order="F" if header.fortran_order else "C")
    # numpy's stubs declare ndarray.__buffer__ only for Python >= 3.12; arrays are buffers on 3.11 too.
    view = memoryview(array.reshape(-1, order="A").view(np.uint8)) if array.size else memoryview(b"")  # type: ignore[arg-type]
    done = 0
    while done < len(view):
        count = handle.readinto(view[done:done + chunk])
        if not count:
            raise InvalidArtifactsError(f"{path}: file shrank while reading")
        if digest is not None:
            digest.update(view[done:done + count])
        done += count
    return array


def read_json_file(path: Path, *, max_bytes: int = MAX_JSON_FILE_BYTES, within: Path | None = None) -> Any:
    """Parse a small JSON file strictly (no NaN/Infinity), as InvalidArtifactsError on any problem.

    The file is read by :func:`read_regular_file` (``within``: the folder it must stay in).
    """
    return _parse_json(path, _read_json_bytes(path, max_bytes, within))


def read_json_verified(path: Path, expected_sha256: str, *, max_bytes: int = MAX_JSON_FILE_BYTES,
                       within: Path | None = None) -> Any:
    """:func:`read_json_file` that also checks the file's sha256, reading it once."""
    data = _read_json_bytes(path, max_bytes, within)
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise _checksum_mismatch(path, digest, expected_sha256)
    return _parse_json(path, data)


def _read_json_bytes(path: Path, max_bytes: int, within: Path | None) -> bytes:
    try:
        return read_regular_file(path, max_bytes=max_bytes, within=within)
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        if isinstance(exc, InvalidArtifactsError):
            raise
        raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return _STRICT_DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidArtifactsError(f"{path}: unreadable JSON ({exc})") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


# Built once: json.loads with a keyword argument builds a new decoder on every call.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


# --------------------------------------------------------------------------- model folders


def check_model_folder(path: Path, model_type: str) -> tuple[dict[str, NpyHeader], list[str]]:
    """Validate a model folder; returns the U/V headers found and the list of problems."""
    files = required_files(model_type)
    if not path.is_dir():
        return {}, [f"artifacts path {str(path)!r} is not a directory"]
    problems = [f"missing required file {name}" for name in files if not os.path.lexists(path / name)]
    headers: dict[str, NpyHeader] = {}
    for name in files:
        file_path = path / name
        if not os.path.lexists(file_path):
            continue
        try:
            if name.endswith(".npy"):
                headers[name] = read_npy_header(file_path, within=path)
            elif name.endswith(".json"):
                if not isinstance(read_json_file(file_path, within=path), dict):
                    problems.append(f"{name} must hold a JSON object")
            else:  # a custom type's other file: only hashed later, but it must be safe to read
                open_regular_file(file_path, max_bytes=MAX_ARTIFACT_BYTES, within=path).close()
        except OSError as exc:
            problems.append(f"{file_path}: cannot be read ({exc})")
        except InvalidArtifactsError as exc:
            problems.append(str(exc))
    u, v = headers.get(f"{model_type}_U.npy"), headers.get(f"{model_type}_V.npy")
    for name, header in ((f"{model_type}_U.npy", u), (f"{model_type}_V.npy", v)):
        if header is not None and len(header.shape) != 2:
            problems.append(f"{name} must be 2-D (rows x factors), has shape {header.shape}")
    if u is not None and v is not None and len(u.shape) == 2 and len(v.shape) == 2:
        if u.shape[1] != v.shape[1]:
            problems.append(f"factor counts differ: U has {u.shape[1]}, V has {v.shape[1]}")
        problems.extend(_metadata_problems(path, model_type, u.shape, v.shape))
        problems.extend(_id_map_problems(path, model_type, u.shape[0], v.shape[0]))
        problems.extend(_interactions_problems(path, model_type, u.shape[0], v.shape[0]))
    problems.extend(user_eval_problems(path, model_type))
    return headers, problems


def validate_artifacts(artifacts_path: str | os.PathLike[str], model_type: str) -> tuple[bool, list[str]]:
    """Check a model folder: required files, ``.npy`` headers, shapes, JSON, metadata, id maps,
    per-user evaluation.

    Returns:
        ``(ok, problems)``; an unknown type gives ``(False, ["Unknown model type: X"])``.
    """
    if model_type not in REQUIRED_MODEL_FILES:
        return False, [f"Unknown model type: {model_type}"]
    _, problems = check_model_folder(Path(artifacts_path), model_type)
    return not problems, problems


def _metadata_problems(path: Path, model_type: str, u_shape: tuple[int, ...], v_shape: tuple[int, ...]) -> list[str]:
    metadata_path = path / f"{model_type}_metadata.json"
    if not os.path.lexists(metadata_path):
        return []
    try:
        metadata = read_json_file(metadata_path, within=path)
    except InvalidArtifactsError:
        return []  # already reported
    if not isinstance(metadata, dict):
        return []
    expected = {"num_users": u_shape[0], "num_items": v_shape[0], "factors": u_shape[1]}
    return [
        f"{metadata_path.name}: {key}={metadata[key]!r} but the arrays give {value}"
        for key, value in expected.items()
        if key in metadata and metadata[key] != value
    ]


def _id_map_problems(path: Path, model_type: str, num_users: int, num_items: int) -> list[str]:
    problems = []
    for suffix, rows in (("user_ids", num_users), ("item_ids", num_items)):
        file_path = path / id_map_files(model_type)[suffix]
        if not os.path.lexists(file_path):
            continue
        try:
            ids = read_json_file(file_path, within=path)
        except InvalidArtifactsError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            problems.append(f"{file_path.name} must be a JSON list of string or integer ids")
        elif len(ids) != rows:
            problems.append(f"{file_path.name} has {len(ids)} ids but the matrix has {rows} rows")
        elif len(set(ids)) != len(ids):
            problems.append(f"{file_path.name} contains duplicate ids")
    return problems


def _interactions_problems(path: Path, model_type: str, num_users: int, num_items: int) -> list[str]:
    file_path = path / interactions_file(model_type)
    if not file_path.exists():
        return []
    try:
        read_interactions(file_path, num_users, num_items, within=path)
    except InvalidArtifactsError as exc:
        return [str(exc)]
    return []


def optional_model_files(model_type: str) -> list[str]:
    """Optional files recorded (with checksums) when a model folder has them."""
    return [*id_map_files(model_type).values(), interactions_file(model_type), user_eval_file(model_type)]


def model_files(path: Path, model_type: str) -> list[str]:
    """Files recorded for a model: the required ones plus any optional ones present."""
    names = list(required_files(model_type))
    # is_file(): only regular files (check_model_folder has refused anything else at registration,
    # and copy_model_artifacts must never pick up a FIFO or a link to a device).
    names.extend(name for name in optional_model_files(model_type) if (path / name).is_file())
    return names


# --------------------------------------------------------------------------- checksums


@dataclass(frozen=True)
class FileFingerprint:
    file_name: str
    size_bytes: int
    sha256: str
    mtime_ns: int  # -1: too recent to trust for skipping a re-hash (see fingerprint)


_hash_cache: dict[tuple[int, int, int, int], str] = {}
# Coarse filesystem clocks (ext4 ticks, FAT's 2 s) can give a rewritten file its old mtime.
RACY_WINDOW_NS = 2_000_000_000
_hash_cache_lock = threading.Lock()


def sha256_file(path: Path, *, max_bytes: int = MAX_ARTIFACT_BYTES, within: Path | None = None) -> str:
    """sha256 hex digest of a file opened by :func:`open_regular_file`, streamed."""
    with open_regular_file(path, max_bytes=max_bytes, within=within) as handle:
        return _digest_handle(handle, path, max_bytes)


def verify_sha256(path: Path, expected_sha256: str, *, within: Path | None = None) -> None:
    """Check a file against the sha256 recorded at registration.

    Raises:
        ChecksumMismatchError: the file's sha256 differs.
        InvalidArtifactsError: the file cannot be read (``UnsafeFileError``: it is not
            a regular file, too large, or outside ``within``).
    """
    try:
        digest = sha256_file(path, within=within)
    except OSError as exc:
        raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc
    if digest != expected_sha256:
        raise _checksum_mismatch(path, digest, expected_sha256)


def verify_open_sha256(handle: BinaryIO, path: Path, expected_sha256: str, *, max_bytes: int = MAX_ARTIFACT_BYTES) -> None:
    """Check the sha256 of an open file, read from its current position to the end.

    For readers that must parse the very file they hashed (a mapping, ``torch.load``):
    hash, ``seek(0)``, then read the same open file.

    Raises:
        ChecksumMismatchError: the sha256 differs.
        UnsafeFileError: more than ``max_bytes`` bytes were read.
    """
    digest = _digest_handle(handle, path, max_bytes)
    if digest != expected_sha256:
        raise _checksum_mismatch(path, digest, expected_sha256)


def _checksum_mismatch(path: Path, digest: str, expected_sha256: str) -> ChecksumMismatchError:
    return ChecksumMismatchError(f"{path}: sha256 {digest} differs from the {expected_sha256} recorded at registration")


def fingerprint(path: Path, known: dict[str, FileFingerprint] | None = None, *, within: Path | None = None) -> FileFingerprint:
    """Size, mtime and sha256 of a file, hashing only content not seen before.

    The file is opened by :func:`open_regular_file` (``within``: the model's folder)
    and everything is taken from that open file, so the size recorded is that of the
    content hashed.

    A file whose (size, mtime_ns) equal a ``known`` fingerprint of the same name,
    or whose (device, inode, size, mtime_ns) was hashed earlier in this process,
    is not hashed again. A file modified less than ``RACY_WINDOW_NS`` before it
    was hashed is never trusted later: its ``mtime_ns`` is reported as -1 and it
    is not cached, because a rewrite within the filesystem's timestamp
    granularity would keep the same (size, mtime) with other content.

    Raises:
        InvalidArtifactsError: the file cannot be read or is unsafe (``UnsafeFileError``).
    """
    try:
        with open_regular_file(path, max_bytes=MAX_ARTIFACT_BYTES, within=within) as handle:
            return _fingerprint_open(path, handle, known)
    except OSError as exc:
        raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc


def hashed_here(path: Path, *, within: Path) -> FileFingerprint | None:
    """The fingerprint of a file this process already hashed unchanged, without reading it; else None.

    "Unchanged": same device, inode, size and mtime as when it was hashed (and hashed
    outside the racy window, see :func:`fingerprint`). Lets a caller that registers the same
    files again skip looking up the fingerprints recorded in the database.

    One ``lstat``, no open: a symlink or anything but a regular file is never in the cache
    (only files :func:`fingerprint` opened safely are), so it answers None and the caller
    takes the safe path. So does a file not directly in its folder ``within`` (a name with a
    directory part could pass through a symlinked folder that ``lstat`` does not see).
    """
    if path.parent != within:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ARTIFACT_BYTES:
        return None
    return _hashed_before(path, info)


def _hash_key(info: os.stat_result) -> tuple[int, int, int, int]:
    # The file itself (device, inode) at one size and mtime: no path resolution needed.
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _hashed_before(path: Path, info: os.stat_result) -> FileFingerprint | None:
    key = _hash_key(info)
    with _hash_cache_lock:
        digest = _hash_cache.get(key)
    return None if digest is None else FileFingerprint(path.name, info.st_size, digest, info.st_mtime_ns)


def _fingerprint_open(path: Path, handle: BinaryIO, known: dict[str, FileFingerprint] | None) -> FileFingerprint:
    info = os.fstat(handle.fileno())
    previous = (known or {}).get(path.name)
    if (previous is not None and previous.mtime_ns >= 0
            and previous.size_bytes == info.st_size and previous.mtime_ns == info.st_mtime_ns):
        return previous
    remembered = _hashed_before(path, info)
    if remembered is not None:
        return remembered
    key = _hash_key(info)
    started = time.time_ns()
    digest = _digest_handle(handle, path, MAX_ARTIFACT_BYTES)
    if info.st_mtime_ns >= started - RACY_WINDOW_NS:
        return FileFingerprint(path.name, info.st_size, digest, -1)
    with _hash_cache_lock:
        if len(_hash_cache) > 4096:
            _hash_cache.clear()
        _hash_cache[key] = digest
    return FileFingerprint(path.name, info.st_size, digest, info.st_mtime_ns)
