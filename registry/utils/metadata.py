"""``{model_type}_metadata.json``: the training metadata saved next to a model's matrices."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from numbers import Integral
from pathlib import Path
from typing import Any

from ..artifacts import read_json_file
from ..errors import InvalidArgumentError, InvalidArtifactsError
from ..fsio import atomic_write_text
from ..timestamps import format_timestamp
from ..validation import to_jsonable, validate_identifier
from .git import get_git_commit


def metadata_file(model_path: str | os.PathLike[str], model_type: str) -> Path:
    """``{model_path}/{model_type}_metadata.json``."""
    validate_identifier(model_type, "model_type")
    return Path(model_path) / f"{model_type}_metadata.json"


def create_model_metadata(
    num_users: int,
    num_items: int,
    factors: int,
    model_type: str,
    data_version: str | None = None,
    git_commit: str | None = None,
    score_range: tuple[float, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the metadata dict of a trained model.

    Keys: ``num_users``, ``num_items``, ``factors``, ``model_type``,
    ``training_date`` (UTC ISO), ``data_version_hash`` (``'unknown'`` when not
    given), ``git_commit`` (detected from the working directory when not given),
    ``score_range`` ``{'min', 'max'}`` when given, then ``extra`` merged on top.
    numpy numbers are converted to plain Python numbers.

    Raises:
        InvalidArgumentError: negative or non-integer sizes, a bad ``model_type``,
            a ``score_range`` that is not two numbers, or ``extra`` that is not
            JSON-serialisable.
    """
    validate_identifier(model_type, "model_type")
    sizes = {"num_users": num_users, "num_items": num_items, "factors": factors}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise InvalidArgumentError(f"{name} must be a non-negative integer, got {value!r}")
    metadata: dict[str, Any] = {name: int(value) for name, value in sizes.items()}
    metadata.update(
        model_type=model_type,
        training_date=format_timestamp(datetime.now(UTC)),
        data_version_hash=data_version or "unknown",
        git_commit=git_commit if git_commit is not None else get_git_commit(),
    )
    if score_range is not None:
        pair = to_jsonable(list(score_range), "score_range") if isinstance(score_range, (tuple, list)) else None
        if pair is None or len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair):
            raise InvalidArgumentError(f"score_range must be a (min, max) pair of numbers, got {score_range!r}")
        metadata["score_range"] = {"min": pair[0], "max": pair[1]}
    if extra:
        if not isinstance(extra, dict):
            raise InvalidArgumentError(f"extra must be a dict, got {type(extra).__name__}")
        metadata.update(to_jsonable(extra, "extra"))
    return metadata


def save_model_metadata(model_path: str | os.PathLike[str], model_type: str, metadata: dict[str, Any]) -> str:
    """Write ``{model_type}_metadata.json`` atomically (the old file survives any failure).

    Returns:
        The file's path.

    Raises:
        InvalidArgumentError: ``metadata`` is not a dict of JSON values (NaN refused);
            nothing is written.
    """
    if not isinstance(metadata, dict):
        raise InvalidArgumentError(f"metadata must be a dict, got {type(metadata).__name__}")
    path = metadata_file(model_path, model_type)
    text = json.dumps(to_jsonable(metadata, "metadata"), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return str(path)


def load_model_metadata(model_path: str | os.PathLike[str], model_type: str) -> dict[str, Any]:
    """Read ``{model_type}_metadata.json`` of a model folder.

    Raises:
        FileNotFoundError: the file does not exist.
        InvalidArtifactsError: it is not a JSON object (or holds NaN/Infinity).
    """
    path = metadata_file(model_path, model_type)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file {str(path)!r} not found")
    metadata = read_json_file(path)
    if not isinstance(metadata, dict):
        raise InvalidArtifactsError(f"{path} must hold a JSON object, got {type(metadata).__name__}")
    return metadata
