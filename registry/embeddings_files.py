"""The BERT embeddings file of a folder: which file, its shape, and loading ``.pt`` tensors safely.

A folder holds ``product_embeddings.npy`` or ``item_embeddings.npy`` (or the ``.pt``
variants when torch is installed). Used by :mod:`registry.bert_registry` and by the legacy
import, which fingerprints the embeddings folders it imports.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .artifacts import (
    MAX_NPY_BYTES,
    NUMERIC_DTYPE_KINDS,
    read_npy_header,
    verify_open_sha256,
)
from .errors import InvalidArtifactsError
from .fsio import open_regular_file

NPY_FILE_NAMES = ("product_embeddings.npy", "item_embeddings.npy")
TORCH_FILE_NAMES = ("product_embeddings.pt", "item_embeddings.pt")


def torch_available() -> bool:
    """True when torch can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def inspect_embeddings_folder(folder: Path) -> tuple[Path | None, tuple[int, ...] | None, list[str]]:
    """Find and check the embeddings file of a folder.

    Looks for ``product_embeddings.npy``, ``item_embeddings.npy``, then the ``.pt``
    variants when torch is installed; the first one found is used.

    Returns:
        ``(file, shape, problems)``; ``problems`` is empty when the file is a valid
        numeric 2-D array.
    """
    if not folder.exists():
        return None, None, [f"embedding path {str(folder)!r} does not exist"]
    if not folder.is_dir():
        return None, None, [f"embedding path {str(folder)!r} is not a directory (give the folder holding the file)"]
    names = NPY_FILE_NAMES + (TORCH_FILE_NAMES if torch_available() else ())
    # Present = any directory entry, so a FIFO or a stray symlink is reported, not skipped.
    file_path = next((folder / name for name in names if os.path.lexists(folder / name)), None)
    if file_path is None:
        hint = ""
        if not torch_available() and any((folder / name).is_file() for name in TORCH_FILE_NAMES):
            hint = " (a .pt file is present but torch is not installed: save the array with numpy.save)"
        return None, None, [f"no embeddings file in {str(folder)!r}: expected one of {list(names)}{hint}"]
    try:
        if file_path.suffix == ".npy":
            shape = read_npy_header(file_path, within=folder).shape
        else:
            shape = tuple(load_torch(file_path, folder).shape)
    except InvalidArtifactsError as exc:
        return file_path, None, [str(exc)]
    if len(shape) != 2:
        return file_path, shape, [f"{file_path} must hold a 2-D array (items x dim), has shape {shape}"]
    return file_path, shape, []


def load_torch(path: Path, folder: Path, expected_sha256: str | None = None) -> Any:
    """A ``.pt`` tensor as a numpy array; ``weights_only=True`` so no pickled code runs.

    The file is opened once (a regular file inside ``folder``, at most
    ``MAX_NPY_BYTES``), hashed when ``expected_sha256`` is given, and that same open
    file is given to ``torch.load``.
    """
    try:
        with open_regular_file(path, max_bytes=MAX_NPY_BYTES, within=folder) as handle:
            if expected_sha256 is not None:
                verify_open_sha256(handle, path, expected_sha256, max_bytes=MAX_NPY_BYTES)
                handle.seek(0)
            return _read_tensor(handle, path)
    except OSError as exc:
        raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc


def _read_tensor(handle: Any, path: Path) -> Any:
    """The one tensor of an open ``.pt`` file as a contiguous numeric numpy array."""
    import numpy as np
    import torch

    try:
        value = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/runtime errors of many types for bad files
        raise InvalidArtifactsError(f"{path}: not a loadable tensor file ({exc})") from exc
    if not isinstance(value, torch.Tensor):
        raise InvalidArtifactsError(f"{path}: holds a {type(value).__name__}, expected one tensor")
    try:
        array = value.detach().cpu().numpy()
    except (TypeError, RuntimeError) as exc:  # e.g. bfloat16 or sparse tensors have no numpy form
        raise InvalidArtifactsError(f"{path}: tensor of dtype {value.dtype} cannot be converted to numpy ({exc})") from exc
    if array.dtype.kind not in NUMERIC_DTYPE_KINDS:
        raise InvalidArtifactsError(f"{path}: dtype {array.dtype} refused (numeric tensors only)")
    return np.ascontiguousarray(array)
