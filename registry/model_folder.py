"""Writing a model folder that ``register_model`` accepts, from arrays and dicts.

Usage::

    folder = write_model_folder("artifacts/cf/als/v1", "als", U, V, params={"factors": 64},
                                user_ids=users, item_ids=items, interactions=(user_rows, item_rows))
    registry.register_model(folder, "als", metrics={"ndcg@10": 0.19})

Everything is checked before anything is written; a new folder is written under a
hidden temporary name beside it and renamed into place when complete, and files
replaced in an existing folder (``overwrite=True``) are each replaced atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .artifacts import (
    NUMERIC_DTYPE_KINDS,
    check_model_folder,
    id_map_files,
    required_files,
    standard_model_files,
    user_eval_file,
)
from .errors import InvalidArgumentError, InvalidArtifactsError, ModelExistsError
from .fsio import atomic_write_bytes
from .interactions import Interactions, interactions_file, interactions_from_pairs
from .user_eval import user_eval_bytes
from .validation import json_payload, path_text, to_jsonable, validate_identifier

logger = logging.getLogger(__name__)

__all__ = ["write_model_folder"]

InteractionsInput = Interactions | tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]


def write_model_folder(
    path: str | os.PathLike[str],
    model_type: str,
    U: Any,
    V: Any,
    *,
    params: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    user_ids: Sequence[str | int] | None = None,
    item_ids: Sequence[str | int] | None = None,
    interactions: InteractionsInput | None = None,
    user_eval: tuple[Sequence[str | int], Mapping[str, Any]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder in the registry's layout; returns ``Path(path)``, ready for ``register_model``.

    Files: ``{type}_U.npy``, ``{type}_V.npy`` (2-D numeric arrays, same factor count),
    ``{type}_params.json``, ``{type}_metadata.json`` (``num_users``, ``num_items`` and
    ``factors`` filled in from the shapes), and when given ``{type}_user_ids.json``,
    ``{type}_item_ids.json`` (row ``i`` of U/V is that id) and ``{type}_interactions.npz``
    (which items each user was trained on; the service leaves them out of its recommendations)
    and ``{type}_user_eval.npz`` (per-user metric values: the evidence ``compare_metrics`` and
    ``select_best_model(confidence=...)`` use).

    Args:
        path: the folder; relative paths are kept relative in the returned path.
        model_type: a known model type (``als``, ``bpr``, ``bert_als`` or one added with
            :func:`registry.register_model_type` whose required files are the standard four).
        U: users x factors embeddings.
        V: items x factors embeddings.
        params: the hyperparameters (a JSON object).
        metadata: more metadata; ``num_users``/``num_items``/``factors`` must match the
            shapes when given, ``model_type`` must match the type.
        user_ids: one unique external id (str or int) per row of ``U``.
        item_ids: one unique external id per row of ``V``.
        interactions: training interactions, an :class:`~registry.interactions.Interactions`
            or a ``(user_rows, item_rows)`` pair of index sequences.
        user_eval: per-user evaluation, ``(user_ids, {"ndcg@10": values, ...})``: unique
            user ids and, per metric, one finite value per user (see docs/statistics.md).
        overwrite: replace the model's files in an existing folder (each file atomically;
            optional files not given this time are removed). Without it a folder that
            already holds files of this model type is refused.

    Returns:
        ``Path(path)``.

    Raises:
        InvalidArgumentError: bad arrays, ids, params/metadata, interactions or model type.
        ModelExistsError: the folder already holds ``{type}_*`` files and ``overwrite`` is False.
    """
    folder = Path(path_text(path, "path"))
    files = _model_files(model_type, U, V, params, metadata, user_ids, item_ids, interactions)
    if user_eval is not None:
        files[user_eval_file(model_type)] = _user_eval_writer(user_eval, folder / user_eval_file(model_type))
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"{str(folder)!r} exists and is not a directory")
    if folder.is_dir() and any(folder.iterdir()):
        existing = sorted(p.name for p in folder.glob(f"{model_type}_*") if p.name in _all_names(model_type))
        if existing and not overwrite:
            raise ModelExistsError(
                f"{str(folder)!r} already holds {', '.join(existing)}; pass overwrite=True to replace them, "
                "or write to a new folder (registered models keep the checksums of their files)"
            )
        _write_into(folder, model_type, files)
    else:
        _write_new(folder, model_type, files)
    logger.info("wrote model folder %s (%s)", folder, ", ".join(sorted(files)))
    return folder


# --------------------------------------------------------------------------- checking


Writer = Callable[[BinaryIO], None]


def _all_names(model_type: str) -> set[str]:
    return {*standard_model_files(model_type), *id_map_files(model_type).values(), interactions_file(model_type),
            user_eval_file(model_type)}


def _model_files(model_type: str, U: Any, V: Any, params: Mapping[str, Any], metadata: Mapping[str, Any] | None,
                 user_ids: Sequence[Any] | None, item_ids: Sequence[Any] | None,
                 interactions: InteractionsInput | None) -> dict[str, Writer]:
    """Every file to write, as ``name -> writer``, after checking all inputs."""
    validate_identifier(model_type, "model_type")
    extra = sorted(set(required_files(model_type)) - set(standard_model_files(model_type)))
    if extra:
        raise InvalidArgumentError(
            f"model type {model_type!r} also requires {extra}: write_model_folder writes only the standard files; "
            "write the folder yourself"
        )
    users, items = _embeddings(U, "U"), _embeddings(V, "V")
    if users.shape[1] != items.shape[1]:
        raise InvalidArgumentError(f"U has {users.shape[1]} factors but V has {items.shape[1]}")
    num_users, num_items, factors = users.shape[0], items.shape[0], users.shape[1]
    params_json = json_payload(params, "params")
    shapes = {"num_users": num_users, "num_items": num_items, "factors": factors}
    meta = json_payload(metadata, "metadata") or {}
    for key, value in {**shapes, "model_type": model_type}.items():
        if key in meta and meta[key] != value:
            raise InvalidArgumentError(f"metadata[{key!r}] = {meta[key]!r} but the arrays give {value!r}")
    meta = {**shapes, "model_type": model_type, **meta}
    prefix = model_type
    files: dict[str, Writer] = {
        f"{prefix}_U.npy": _npy_writer(users),
        f"{prefix}_V.npy": _npy_writer(items),
        f"{prefix}_params.json": _json_writer(params_json, indent=2),
        f"{prefix}_metadata.json": _json_writer(meta, indent=2),
    }
    names = id_map_files(prefix)
    if user_ids is not None:
        files[names["user_ids"]] = _json_writer(_id_map(user_ids, num_users, "user_ids", "U"))
    if item_ids is not None:
        files[names["item_ids"]] = _json_writer(_id_map(item_ids, num_items, "item_ids", "V"))
    if interactions is not None:
        files[interactions_file(prefix)] = _npz_writer(_interactions(interactions, num_users, num_items))
    return files


def _embeddings(value: Any, name: str) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise InvalidArgumentError(f"{name} must be a 2-D numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"{name} must be a 2-D numeric array ({exc})") from None
    if array.dtype.hasobject or array.dtype.kind not in NUMERIC_DTYPE_KINDS or array.dtype.kind == "b":
        raise InvalidArgumentError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidArgumentError(f"{name} must be a non-empty 2-D array (rows x factors), got shape {array.shape}")
    if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
        raise InvalidArgumentError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def _id_map(ids: Sequence[Any], rows: int, name: str, matrix: str) -> list[Any]:
    if isinstance(ids, (str, bytes, Mapping)):
        raise InvalidArgumentError(f"{name} must be a sequence of ids, got {type(ids).__name__}")
    values = to_jsonable(list(ids), name)
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        raise InvalidArgumentError(f"{name} must hold only strings or integers")
    if len(values) != rows:
        raise InvalidArgumentError(f"{name} has {len(values)} ids but {matrix} has {rows} rows")
    if len(set(values)) != len(values):
        raise InvalidArgumentError(f"{name} contains duplicate ids")
    return values


def _interactions(value: InteractionsInput, num_users: int, num_items: int) -> Interactions:
    try:
        if isinstance(value, Interactions):
            if (value.num_users, value.num_items) != (num_users, num_items):
                raise InvalidArgumentError(
                    f"interactions are {value.num_users} users x {value.num_items} items but U/V give "
                    f"{num_users} x {num_items}"
                )
            # Re-built from its pairs: checks the CSR arrays and gives the canonical (sorted, unique) form.
            users = np.repeat(np.arange(num_users), np.diff(np.asarray(value.indptr)))
            return interactions_from_pairs(users, value.indices, num_users, num_items)
        if not isinstance(value, tuple) or len(value) != 2:
            raise InvalidArgumentError("interactions must be an Interactions or a (user_rows, item_rows) pair")
        rows, items = (np.asarray(part) for part in value)
        for part, label in ((rows, "user rows"), (items, "item rows")):
            if part.size and part.dtype.kind not in "iu":
                raise InvalidArgumentError(f"interactions: {label} must be integers, got dtype {part.dtype}")
        return interactions_from_pairs(rows, items, num_users, num_items)
    except InvalidArtifactsError as exc:
        raise InvalidArgumentError(str(exc)) from None
    except ValueError as exc:
        raise InvalidArgumentError(f"interactions: {exc}") from None


# --------------------------------------------------------------------------- writing


def _npy_writer(array: np.ndarray) -> Writer:
    return lambda handle: np.save(handle, array, allow_pickle=False)


def _json_writer(value: Any, indent: int | None = None) -> Writer:
    data = (json.dumps(value, indent=indent, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write


def _user_eval_writer(user_eval: Any, path: Path) -> Writer:
    if not isinstance(user_eval, tuple) or len(user_eval) != 2 or not isinstance(user_eval[1], Mapping):
        raise InvalidArgumentError("user_eval must be a (user_ids, {metric name: per-user values}) pair")
    data = user_eval_bytes(user_eval[0], user_eval[1], str(path))

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write


def _npz_writer(interactions: Interactions) -> Writer:
    return lambda handle: np.savez(handle, indptr=interactions.indptr, indices=interactions.indices)


def _write_new(folder: Path, model_type: str, files: Mapping[str, Writer]) -> None:
    """Write every file into a hidden sibling folder, then rename it to ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.staging-{os.getpid()}-{time.monotonic_ns()}"
    staging.mkdir()
    try:
        for name, writer in files.items():
            atomic_write_bytes(staging / name, writer)
        _check_written(staging, model_type)
        try:
            os.rename(staging, folder)  # also replaces an empty folder created meanwhile
        except OSError as exc:
            raise ModelExistsError(f"{str(folder)!r} appeared while it was being written ({exc.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_into(folder: Path, model_type: str, files: Mapping[str, Writer]) -> None:
    """Replace the model's files in an existing folder, each atomically; drop stale optional files."""
    for name, writer in files.items():
        atomic_write_bytes(folder / name, writer)
    for name in sorted(_all_names(model_type) - set(files)):
        (folder / name).unlink(missing_ok=True)
    _check_written(folder, model_type)


def _check_written(folder: Path, model_type: str) -> None:
    """What ``register_model`` checks; inputs that passed the checks above always pass it."""
    _, problems = check_model_folder(folder, model_type)
    if problems:
        raise InvalidArtifactsError(f"{folder}: the written folder fails validation: {problems}")
