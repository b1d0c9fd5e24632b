"""Per-user evaluation files: writing, reading, validating, and comparing two models on them.

A model folder may hold ``{model_type}_user_eval.npz``: a ``user_ids`` array
(1-D, unique string or integer ids) and one 1-D array of finite numbers per
metric, keyed by the metric name (``ndcg@10``, ``recall@20``...), all the same
length. The registry records it with its checksum like every other file of the
model, and :func:`compare_models` reads it back (checksum verified) to compare
two models on the users both were evaluated on.

Usage::

    write_user_eval("artifacts/cf/als/v2", "als", user_ids, {"ndcg@10": per_user_ndcg})
    registry.compare_metrics("als_v1", "als_v2", "ndcg@10")
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import stats
from .artifacts import user_eval_file, verify_sha256
from .errors import InvalidArgumentError, InvalidArtifactsError, NoUserEvaluationError
from .export import atomic_write_bytes
from .models import ArtifactFile, Model
from .validation import METRIC_NAME_PATTERN, finite_real, validate_identifier, validate_metric_name

if TYPE_CHECKING:
    from .context import RegistryContext

logger = logging.getLogger(__name__)

USER_IDS_KEY = "user_ids"
# Bound on the uncompressed size of an evaluation file (the zip members' declared sizes).
MAX_USER_EVAL_BYTES = int(os.environ.get("CFREG_MAX_USER_EVAL_BYTES", 256 << 20))
ID_DTYPE_KINDS = "iuU"
VALUE_DTYPE_KINDS = "fiu"

__all__ = [
    "UserEvaluation",
    "compare_models",
    "read_user_eval",
    "user_eval_file",
    "user_eval_problems",
    "write_user_eval",
]


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


def _evaluation_of(context: RegistryContext, session: Session, model_id: str) -> tuple[Path, str]:
    """The evaluation file of a model and its recorded sha256 (NoUserEvaluationError when none)."""
    model = session.get(Model, model_id)
    if model is None:
        from .errors import ModelNotFoundError

        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")
    name = user_eval_file(model.model_type)
    sha256 = session.scalar(
        select(ArtifactFile.sha256).where(ArtifactFile.model_id == model_id, ArtifactFile.file_name == name)
    )
    if sha256 is None:
        raise NoUserEvaluationError(
            f"model {model_id!r} has no per-user evaluation ({name} was not in its folder at registration); "
            "write it with registry.write_user_eval(...) and re-register the model"
        )
    return context.resolve(model.path) / name, sha256


def load_recorded(context: RegistryContext, session: Session, model_id: str) -> UserEvaluation:
    """A model's evaluation file, checked against the sha256 recorded at registration."""
    path, sha256 = _evaluation_of(context, session, model_id)
    verify_sha256(path, sha256)
    return read_user_eval(path)


def align(a: UserEvaluation, b: UserEvaluation, metric: str, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values of ``metric`` for the users evaluated in both (ids compared as strings)."""
    values_a, values_b = a.metric(metric, names[0]), b.metric(metric, names[1])
    _, index_a, index_b = np.intersect1d(a.user_ids.astype(str), b.user_ids.astype(str),
                                         assume_unique=True, return_indices=True)
    if index_a.size < 2:
        raise InvalidArgumentError(
            f"{names[0]} and {names[1]} share {index_a.size} evaluated user(s); a paired comparison needs at least 2"
        )
    return values_a[index_a], values_b[index_b]


def validate_comparison_options(confidence: object, method: object, seed: object, resamples: object) -> tuple[float, str, int, int]:
    """Checked ``(confidence, method, seed, resamples)`` for a paired comparison."""
    level = finite_real(confidence)
    if level is None or not 0.5 <= level < 1.0:
        raise InvalidArgumentError(f"confidence must be a number in [0.5, 1), e.g. 0.95, got {confidence!r}")
    if method not in stats.PAIRED_METHODS:
        raise InvalidArgumentError(f"method must be one of {stats.PAIRED_METHODS}, got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or not 100 <= resamples <= 100_000:
        raise InvalidArgumentError(f"resamples must be an integer between 100 and 100000, got {resamples!r}")
    return level, str(method), seed, resamples


def compare_in_session(context: RegistryContext, session: Session, a: str, b: str, metric: str, *,
                       confidence: float, method: str, seed: int, resamples: int) -> dict[str, Any]:
    """Body of :func:`compare_models` inside an open transaction."""
    first, second = load_recorded(context, session, a), load_recorded(context, session, b)
    values_a, values_b = align(first, second, metric, (a, b))
    result = stats.paired_compare(values_a, values_b, method=method, confidence=confidence, seed=seed, resamples=resamples)
    return {"model_a": a, "model_b": b, "metric": metric, **result.to_dict()}


def compare_models(context: RegistryContext, a: str, b: str, metric: str = "ndcg@10", *, confidence: float = 0.95,
                   method: str = "paired_bootstrap", seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Compare model ``b`` with model ``a`` on the users both were evaluated on.

    Returns a dict: ``model_a``, ``model_b``, ``metric``, ``method``, ``confidence``,
    ``n_users``, ``mean_a``, ``mean_b``, ``difference`` (``mean_b - mean_a``) with
    ``ci_low``/``ci_high``, ``p_value`` (two-sided), ``relative`` (``mean_b / mean_a - 1``)
    with ``relative_ci_low``/``relative_ci_high``, and ``resamples``/``seed`` for the bootstrap.

    Raises:
        ModelNotFoundError: an unknown model.
        NoUserEvaluationError: a model has no evaluation file, or not for ``metric``.
        ChecksumMismatchError: an evaluation file changed since registration.
        InvalidArgumentError: bad options, or fewer than 2 users in common.
    """
    validate_identifier(a, "model_id")
    validate_identifier(b, "model_id")
    validate_metric_name(metric)
    level, method, seed, resamples = validate_comparison_options(confidence, method, seed, resamples)
    return context.read(lambda session: compare_in_session(
        context, session, a, b, metric, confidence=level, method=method, seed=seed, resamples=resamples))
