"""The per-user evaluation file ``{model_type}_user_eval.npz``: its format, writing, reading, checking.

The file holds a ``user_ids`` array (1-D, unique string or integer ids) and one 1-D array of
finite numbers per metric, keyed by the metric name (``ndcg@10``, ``recall@20``...), all the
same length. Registration records it with its checksum like every other file of the model;
:mod:`registry.evaluation` compares two models on it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, InvalidArtifactsError, NoUserEvaluationError
from .fsio import atomic_write_bytes
from .validation import METRIC_NAME_PATTERN, validate_identifier

if TYPE_CHECKING:
    import numpy as np

USER_IDS_KEY = "user_ids"
# Bound on the uncompressed size of an evaluation file (the zip members' declared sizes).
MAX_USER_EVAL_BYTES = int(os.environ.get("CFREG_MAX_USER_EVAL_BYTES", 256 << 20))
ID_DTYPE_KINDS = "iuU"
VALUE_DTYPE_KINDS = "fiu"


def user_eval_file(model_type: str) -> str:
    """The optional per-user evaluation file of a type: ``{model_type}_user_eval.npz``."""
    return f"{model_type}_user_eval.npz"


@dataclass(frozen=True)
class UserEvaluation:
    """Per-user metric values: ``user_ids[i]`` scored ``metrics[name][i]``."""

    user_ids: np.ndarray
    metrics: Mapping[str, np.ndarray]

    def metric(self, name: str, source: str = "the model") -> np.ndarray:
        """One metric's per-user values, or NoUserEvaluationError naming what exists."""
        try:
            return self.metrics[name]
        except KeyError:
            raise NoUserEvaluationError(
                f"{source} has per-user evaluation for {sorted(self.metrics)} but not {name!r}"
            ) from None


def _checked(user_ids: Any, metrics: Mapping[str, Any], where: str) -> UserEvaluation:
    """Validate arrays (ids unique 1-D str/int, metrics 1-D finite, same length); InvalidArtifactsError."""
    import numpy as np  # imported on use: listing and opening a registry never need numpy
    ids = np.asarray(user_ids)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in ID_DTYPE_KINDS:
        raise InvalidArtifactsError(
            f"{where}: user_ids must be a non-empty 1-D array of string or integer ids, got dtype {ids.dtype} shape {ids.shape}"
        )
    if np.unique(ids).size != ids.size:
        raise InvalidArtifactsError(f"{where}: user_ids contains duplicate ids")
    if not metrics:
        raise InvalidArtifactsError(f"{where}: no metric arrays (add one per metric, e.g. 'ndcg@10')")
    checked: dict[str, np.ndarray] = {}
    for name, values in metrics.items():
        if not isinstance(name, str) or not METRIC_NAME_PATTERN.fullmatch(name):
            raise InvalidArtifactsError(f"{where}: invalid metric name {name!r} (1-64 characters of letters, digits and @._:/-)")
        array = np.asarray(values)
        if array.dtype.kind not in VALUE_DTYPE_KINDS or array.ndim != 1:
            raise InvalidArtifactsError(f"{where}: {name} must be a 1-D numeric array, got dtype {array.dtype} shape {array.shape}")
        if array.size != ids.size:
            raise InvalidArtifactsError(f"{where}: {name} has {array.size} values for {ids.size} users")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise InvalidArtifactsError(f"{where}: {name} holds NaN or infinite values")
        checked[name] = array
    return UserEvaluation(ids, checked)


def write_user_eval(folder: str | os.PathLike[str], model_type: str, user_ids: Any,
                    metrics: Mapping[str, Any]) -> Path:
    """Write ``{model_type}_user_eval.npz`` into ``folder`` atomically; returns its path.

    Args:
        folder: the model's artifact folder (created if missing).
        model_type: the model's type, e.g. ``"als"``.
        user_ids: 1-D sequence of unique string or integer user ids.
        metrics: ``{metric name: 1-D sequence of per-user values}``, each as long as ``user_ids``.

    Raises:
        InvalidArgumentError: bad type, ids or values (nothing is written).
    """
    validate_identifier(model_type, "model_type")
    path = Path(folder) / user_eval_file(model_type)
    data = user_eval_bytes(user_ids, metrics, str(path))
    atomic_write_bytes(path, lambda handle: handle.write(data))
    return path


def user_eval_bytes(user_ids: Any, metrics: Mapping[str, Any], where: str) -> bytes:
    """The ``.npz`` content of a per-user evaluation file, after checking it.

    Raises:
        InvalidArgumentError: bad ids or values (``where`` names the file in the message).
    """
    import numpy as np  # imported on use: listing and opening a registry never need numpy
    try:
        evaluation = _checked(user_ids, metrics, where)
    except InvalidArtifactsError as exc:
        raise InvalidArgumentError(str(exc)) from None
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {USER_IDS_KEY: evaluation.user_ids, **evaluation.metrics}
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def read_user_eval(path: str | os.PathLike[str], *, max_bytes: int = MAX_USER_EVAL_BYTES) -> UserEvaluation:
    """Read and validate an evaluation file (never unpickles; size bounded before decompressing).

    Raises:
        InvalidArtifactsError: unreadable, too large, or failing validation.
    """
    import numpy as np  # imported on use: listing and opening a registry never need numpy
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(member.file_size for member in archive.infolist())
        if declared > max_bytes:
            raise InvalidArtifactsError(f"{path}: {declared} bytes uncompressed exceeds the limit of {max_bytes}")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except InvalidArtifactsError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise InvalidArtifactsError(f"{path}: not a readable .npz evaluation file ({exc})") from exc
    if USER_IDS_KEY not in arrays:
        raise InvalidArtifactsError(f"{path}: no 'user_ids' array")
    user_ids = arrays.pop(USER_IDS_KEY)
    return _checked(user_ids, arrays, str(path))


def user_eval_problems(folder: Path, model_type: str) -> list[str]:
    """Problems of the folder's evaluation file (none when it is absent or valid)."""
    path = folder / user_eval_file(model_type)
    if not path.exists():
        return []
    try:
        read_user_eval(path)
    except InvalidArtifactsError as exc:
        return [str(exc)]
    return []


def mean_mismatches(folder: Path, model_type: str, metrics: Mapping[str, float], tolerance: float = 1e-4) -> list[str]:
    """Registered metrics that disagree with the mean of their per-user values.

    The per-user file is the evidence behind a registered figure, so ``ndcg@10=0.20``
    registered with per-user values averaging 0.35 is refused (relative tolerance
    ``tolerance``, absolute 1e-9).
    """
    import numpy as np  # imported on use: listing and opening a registry never need numpy
    path = folder / user_eval_file(model_type)
    if not path.exists() or not metrics:
        return []
    evaluation = read_user_eval(path)
    problems = []
    for name, value in metrics.items():
        values = evaluation.metrics.get(name)
        if values is not None and not np.isclose(values.mean(), value, rtol=tolerance, atol=1e-9):
            problems.append(
                f"{path.name}: the mean of {name} over {values.size} users is {values.mean():.6g}, "
                f"but the registered {name} is {value:.6g}"
            )
    return problems


# --------------------------------------------------------------------------- comparing two models
