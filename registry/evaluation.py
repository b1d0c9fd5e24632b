"""Comparing two models on their per-user evaluation files (the files: :mod:`registry.user_eval`).

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

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import stats
from .artifacts import verify_sha256
from .defaults import DEFAULT_METRIC
from .errors import InvalidArgumentError, ModelNotFoundError, NoUserEvaluationError
from .models import ArtifactFile, Model
from .storage.cache import cached_object
from .user_eval import (  # noqa: F401 - the file's API, documented under this module too
    UserEvaluation,
    read_user_eval,
    user_eval_bytes,
    user_eval_file,
    user_eval_problems,
    write_user_eval,
)
from .validation import finite_real, validate_identifier, validate_metric_name

if TYPE_CHECKING:
    from .context import RegistryContext

logger = logging.getLogger(__name__)

__all__ = [
    "UserEvaluation",
    "compare_models",
    "read_user_eval",
    "user_eval_file",
    "user_eval_problems",
    "write_user_eval",
]



def _evaluation_of(session: Session, model_id: str) -> tuple[str, str, str, str | None, int]:
    """``(model path, file name, sha256, store uri, size)`` of a model's evaluation file (NoUserEvaluationError when none)."""
    model = session.get(Model, model_id)
    if model is None:
        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")
    name = user_eval_file(model.model_type)
    row = session.execute(
        select(ArtifactFile.sha256, ArtifactFile.uri, ArtifactFile.size_bytes)
        .where(ArtifactFile.model_id == model_id, ArtifactFile.file_name == name)
    ).first()
    if row is None:
        raise NoUserEvaluationError(
            f"model {model_id!r} has no per-user evaluation ({name} was not in its folder at registration); "
            "write it with registry.write_user_eval(...) and re-register the model"
        )
    return model.path, name, row[0], row[1], row[2]


def load_recorded(context: RegistryContext, session: Session, model_id: str) -> UserEvaluation:
    """A model's evaluation file, checked against the sha256 recorded at registration.

    A store-backed model's file is read through the host's artifact cache.
    """
    stored, name, sha256, uri, size = _evaluation_of(session, model_id)
    if uri is None:
        path = context.resolve(stored) / name
        verify_sha256(path, sha256)
        return read_user_eval(path)
    with cached_object(uri, sha256, size) as path:
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


def compare_models(context: RegistryContext, a: str, b: str, metric: str = DEFAULT_METRIC, *, confidence: float = 0.95,
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
