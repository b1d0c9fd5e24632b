"""Computing a model diff from the registry's recorded files, and its stored copy.

Both models are read through the loader's verified path (``verify='full'``: every
file's sha256 must match the one recorded at registration), so the stored report's
key, made of those checksums, names exactly the bytes the numbers came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from .. import artifacts, selection
from ..context import RegistryContext
from ..errors import InvalidArgumentError, ModelNotFoundError
from ..interactions import Interactions, interactions_file, read_interactions
from ..models import utcnow
from ..serving.model_files import (
    RECORD_QUERY,
    ModelRecord,
    read_model,
    record_from_rows,
)
from ..serving.model_state import ModelState
from ..storage.records import local_model_files
from ..timestamps import format_timestamp as iso
from ..validation import positive_int, validate_flag, validate_identifier
from . import metrics as m
from . import store
from .matching import Matching, match, sample_labels
from .report import (
    Catalogue,
    CatalogueSide,
    Churn,
    Compatibility,
    Coverage,
    CoverageSide,
    DiffReport,
    Drift,
    MetricRow,
    Neighbours,
)

logger = logging.getLogger(__name__)

MAX_K = 1000
# Users per chunk of the churn loop: overlap and RBO need (chunk, k, k) comparisons.
USER_CHUNK = 4096


@dataclass(frozen=True)
class DiffParams:
    """What a diff was computed with (part of its stored key)."""

    k: int = 10
    users: int = 2000
    items: int = 2000
    seed: int = 0
    full: bool = False

    @classmethod
    def checked(cls, k: object, users: object, items: object, seed: object, full: object) -> DiffParams:
        """Validated parameters; InvalidArgumentError names the bad one."""
        k = positive_int(k, "k")
        if k > MAX_K:
            raise InvalidArgumentError(f"k must be at most {MAX_K}, got {k}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
        return cls(k, positive_int(users, "users"), positive_int(items, "items"), int(seed), validate_flag(full, "full"))

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict."""
        return asdict(self)


@dataclass(frozen=True)
class Side:
    """One model as the diff sees it."""

    state: ModelState
    interactions: Interactions | None


def diff_models(ctx: RegistryContext, model_a: str, model_b: str, params: DiffParams, *, save: bool = True) -> DiffReport:
    """The diff of ``model_b`` against ``model_a`` (stored one when it exists, else computed and stored).

    Raises:
        ModelNotFoundError: an id is not registered.
        InvalidArtifactsError / ChecksumMismatchError: a file is missing or changed since registration.
    """
    validate_identifier(model_a, "model_a")
    validate_identifier(model_b, "model_b")
    record_a, record_b = ctx.read(lambda session: (require_record(session, model_a), require_record(session, model_b)))
    key = diff_key(record_a, record_b, params)
    stored = ctx.read(lambda session: store.find(session, key))
    metric_rows = ctx.read(lambda session: registered_metrics(session, model_a, model_b))
    if stored is not None:
        logger.info("diff %s -> %s: stored report %s", model_a, model_b, key[:12])
        return DiffReport.from_dict({**stored, "metrics": [asdict(row) for row in metric_rows]})
    started = time.perf_counter()
    report = compute(load_side(ctx, record_a), load_side(ctx, record_b), params, key, metric_rows, started)
    if save:
        ctx.mutate(lambda session: store.save(session, report))
    return report


def require_record(session: Session, model_id: str) -> ModelRecord:
    """The model's recorded files, or ModelNotFoundError."""
    record = record_from_rows(list(session.execute(RECORD_QUERY, {"model_id": model_id}).all()))
    if record is None:
        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")
    return record


def diff_key(record_a: ModelRecord, record_b: ModelRecord, params: DiffParams) -> str:
    """sha256 of both models' ids and recorded file checksums and the parameters."""
    document = {"a": [record_a.model_id, record_a.key[1]], "b": [record_b.model_id, record_b.key[1]],
                "params": params.to_dict()}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode("utf-8")).hexdigest()


def registered_metrics(session: Session, model_a: str, model_b: str) -> list[MetricRow]:
    """Every metric either model has, side by side (``diff = b - a``)."""
    values_a, values_b = selection.metrics_of(session, model_a), selection.metrics_of(session, model_b)
    rows = []
    for name in sorted(set(values_a) | set(values_b)):
        a, b = values_a.get(name), values_b.get(name)
        diff = b - a if a is not None and b is not None else None
        relative = diff / abs(a) if diff is not None and a else None
        rows.append(MetricRow(name, a, b, diff, relative))
    return rows


def load_side(ctx: RegistryContext, record: ModelRecord) -> Side:
    """Read a model's arrays, id maps and (optional) interactions, verifying every recorded checksum.

    A store-backed model is read through the host's artifact cache, as the loader reads it.
    """
    with local_model_files(ctx, record, "full") as (folder, found, stamps):
        state = read_model(record, folder, found, stamps, verify="full", mmap=False)
        path = found.get(interactions_file(record.model_type))
        interactions = None
        if path is not None:
            name = interactions_file(record.model_type)
            if name in record.files:
                artifacts.verify_sha256(path, record.files[name][1])
            interactions = read_interactions(path, state.num_users, state.num_items)
    return Side(state, interactions)


def compute(a: Side, b: Side, params: DiffParams, key: str, metric_rows: list[MetricRow], started: float) -> DiffReport:
    """Every section of the report from two loaded models."""
    sa, sb = a.state, b.state
    users = match(sa.user_ids, sb.user_ids, sa.num_users, sb.num_users)
    items = match(sa.item_ids, sb.item_ids, sa.num_items, sb.num_items)
    compatibility = _compatibility(a, b, users, items)
    catalogue = Catalogue(
        users=_catalogue_side(users, sa.user_ids, sb.user_ids),
        items=_catalogue_side(items, sa.item_ids, sb.item_ids),
        disjoint_users=users.kept == 0,
        disjoint_items=items.kept == 0,
    )
    user_seed, item_seed = np.random.SeedSequence(params.seed).spawn(2)
    picked_users = _sample(users.kept, None if params.full else params.users, user_seed)
    churn, coverage = _churn_and_coverage(a, b, users, items, picked_users, params)
    picked_items = _sample(items.kept, params.items, item_seed)
    neighbours = _neighbours(sa, sb, items, picked_items, params.k)
    drift = _drift(sa, sb, items, picked_items)
    return DiffReport(
        model_a=sa.model_id, model_b=sb.model_id, key=key, params=params.to_dict(),
        computed_at=iso(utcnow()) or "", seconds=round(time.perf_counter() - started, 4),
        compatibility=compatibility, catalogue=catalogue, churn=churn, neighbours=neighbours,
        coverage=coverage, drift=drift, metrics=metric_rows,
    )


def _sample(count: int, size: int | None, seed: np.random.SeedSequence) -> np.ndarray:
    """Positions ``0..count-1``: all of them, or a seeded sample of ``size`` in ascending order."""
    if size is None or size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def _compatibility(a: Side, b: Side, users: Matching, items: Matching) -> Compatibility:
    sa, sb = a.state, b.state
    warnings = []
    if sa.model_type != sb.model_type:
        warnings.append(f"model types differ ({sa.model_type} vs {sb.model_type})")
    if sa.factors != sb.factors:
        warnings.append(f"factor dimensions differ ({sa.factors} vs {sb.factors}): churn and neighbours use each "
                        "model's own scores; drift pads the smaller side with zero columns")
    if sa.U.dtype != sb.U.dtype or sa.V.dtype != sb.V.dtype:
        warnings.append(f"dtypes differ ({sa.V.dtype} vs {sb.V.dtype})")
    for what, matching in (("users", users), ("items", items)):
        if matching.by == "index":
            warnings.append(f"{what} compared by index (row i of A is row i of B): "
                            f"{sa.model_type}_{'user' if what == 'users' else 'item'}_ids.json is missing on "
                            f"{_missing_sides(sa, sb, what)}")
        if matching.kept == 0:
            warnings.append(f"disjoint {what}: the models share no {what[:-1]}")
    return Compatibility(
        model_types=[sa.model_type, sb.model_type], factors=[sa.factors, sb.factors],
        dtypes=[str(sa.V.dtype), str(sb.V.dtype)], num_users=[sa.num_users, sb.num_users],
        num_items=[sa.num_items, sb.num_items],
        id_maps={name: {"users": s.user_ids is not None, "items": s.item_ids is not None}
                 for name, s in (("a", sa), ("b", sb))},
        interactions=[a.interactions is not None, b.interactions is not None],
        users_matched_by=users.by, items_matched_by=items.by,
        same_type=sa.model_type == sb.model_type, same_factors=sa.factors == sb.factors, warnings=warnings,
    )


def _missing_sides(sa: ModelState, sb: ModelState, what: str) -> str:
    attribute = "user_ids" if what == "users" else "item_ids"
    missing = [name for name, s in (("A", sa), ("B", sb)) if getattr(s, attribute) is None]
    return " and ".join(missing)


def _catalogue_side(matching: Matching, ids_a: list[Any] | None, ids_b: list[Any] | None) -> CatalogueSide:
    by_ids = matching.by == "ids"
    return CatalogueSide(
        matched_by=matching.by, added=int(matching.only_b.size), removed=int(matching.only_a.size), kept=matching.kept,
        added_sample=sample_labels(matching.only_b, ids_b if by_ids else None),
        removed_sample=sample_labels(matching.only_a, ids_a if by_ids else None),
    )


def _seen_source(own: Interactions | None, other: Interactions | None, own_rows: np.ndarray, other_rows: np.ndarray,
                 other_to_own_item: np.ndarray) -> m.SeenFn | None:
    """Seen items of the chosen users in this model's item numbering: its own interactions,
    else the other model's mapped through the item matching, else None."""
    if own is not None:
        return _seen_pairs(own, own_rows, None)
    if other is not None:
        return _seen_pairs(other, other_rows, other_to_own_item)
    return None


def _seen_pairs(interactions: Interactions, user_rows: np.ndarray, item_map: np.ndarray | None) -> m.SeenFn:
    def seen(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = user_rows[positions]
        starts = interactions.indptr[rows]
        lengths = interactions.indptr[rows + 1] - starts
        flat = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        batch_row = np.repeat(np.arange(rows.size), lengths)
        found = np.asarray(interactions.indices[flat], dtype=np.int64)
        if item_map is not None:
            found = item_map[found]
            keep = found >= 0
            batch_row, found = batch_row[keep], found[keep]
        return batch_row, found

    return seen


def _churn_and_coverage(a: Side, b: Side, users: Matching, items: Matching, picked: np.ndarray,
                        params: DiffParams) -> tuple[Churn, Coverage]:
    sa, sb = a.state, b.state
    k = params.k
    k_eff = min(k, sa.num_items, sb.num_items)
    seen_by = {(True, True): "both", (True, False): "a", (False, True): "b", (False, False): "none"}[
        (a.interactions is not None, b.interactions is not None)]
    rows_a, rows_b = users.a_rows[picked], users.b_rows[picked]
    keys_b = items.keys_of_b(sa.num_items)
    counts_a = np.zeros(sa.num_items, dtype=np.int64)
    counts_b = np.zeros(sb.num_items, dtype=np.int64)
    overlaps, rbos, top1 = [], [], []
    for part in m.batches(picked.size, USER_CHUNK):
        chunk_a, chunk_b = rows_a[part], rows_b[part]
        top_a = m.recommend(sa.U, sa.V, chunk_a, k, _seen_source(a.interactions, b.interactions, chunk_a, chunk_b, items.b_to_a))
        top_b = m.recommend(sb.U, sb.V, chunk_b, k, _seen_source(b.interactions, a.interactions, chunk_b, chunk_a, items.a_to_b))
        top_a, top_b = top_a[:, :k_eff], top_b[:, :k_eff]
        counts_a += np.bincount(top_a[top_a >= 0], minlength=sa.num_items)
        counts_b += np.bincount(top_b[top_b >= 0], minlength=sb.num_items)
        key_a = top_a
        key_b = np.where(top_b >= 0, keys_b[np.maximum(top_b, 0)], m.MISSING - 1)  # -2: never equals A's -1
        overlaps.append(m.overlap(key_a, key_b, k_eff))
        rbos.append(m.rank_biased_overlap(key_a, key_b))
        if k_eff:
            top1.append(key_a[:, 0] != key_b[:, 0])
    overlap = np.concatenate(overlaps) if overlaps else np.empty(0)
    rbo = np.concatenate(rbos) if rbos else np.empty(0)
    changed = np.concatenate(top1) if top1 else np.empty(0, dtype=bool)
    note = None
    if overlap.size == 0:
        note = "no shared users" if users.kept == 0 else "no items to recommend"
    mean = float(overlap.mean()) if overlap.size else None
    churn = Churn(
        users_compared=int(picked.size), full=params.full, k=k_eff, seen_excluded=seen_by,
        churn=None if mean is None else 1.0 - mean, mean_overlap=mean, overlap=m.distribution(overlap),
        overlap_histogram=m.histogram(overlap, k_eff) if overlap.size else [],
        top1_changed=float(changed.mean()) if changed.size else None,
        mean_rbo=float(rbo.mean()) if rbo.size else None, rbo=m.distribution(rbo), note=note,
    )
    popularity_a = _item_counts(a.interactions, b.interactions, items.a_to_b)
    popularity_b = _item_counts(b.interactions, a.interactions, items.b_to_a)
    coverage = Coverage(
        a=_coverage_side(counts_a, popularity_a, picked.size),
        b=_coverage_side(counts_b, popularity_b, picked.size),
    )
    return churn, coverage


def _item_counts(own: Interactions | None, other: Interactions | None, own_to_other: np.ndarray) -> np.ndarray | None:
    """Training interactions per item of this model (borrowed through the item matching when it has none)."""
    if own is not None:
        return np.asarray(own.item_counts())
    if other is not None:
        counts = np.asarray(other.item_counts())
        return np.where(own_to_other >= 0, counts[np.maximum(own_to_other, 0)], 0)
    return None


def _coverage_side(counts: np.ndarray, popularity: np.ndarray | None, users: int) -> CoverageSide:
    if users == 0 or counts.size == 0:
        return CoverageSide(None, 0, None, None, None)
    distinct = int(np.count_nonzero(counts))
    rank = pct = None
    if popularity is not None and counts.sum():
        ranks = m.popularity_ranks(popularity)
        rank = float((ranks * counts).sum() / counts.sum())
        pct = rank / counts.size
    return CoverageSide(distinct / counts.size, distinct, m.gini(counts), rank, pct)


def _neighbours(sa: ModelState, sb: ModelState, items: Matching, picked: np.ndarray, k: int) -> Neighbours:
    k_eff = min(k, sa.num_items - 1, sb.num_items - 1)
    if picked.size == 0 or k_eff <= 0:
        note = "no shared items" if items.kept == 0 else "catalogues too small for neighbours"
        return Neighbours(0, max(k_eff, 0), None, m.distribution(np.empty(0)), note)
    rows_a, rows_b = items.a_rows[picked], items.b_rows[picked]
    near_a = m.neighbours(sa.V, rows_a, k_eff)[:, :k_eff]
    near_b = m.neighbours(sb.V, rows_b, k_eff)[:, :k_eff]
    keys_b = items.keys_of_b(sa.num_items)
    near_b = np.where(near_b >= 0, keys_b[np.maximum(near_b, 0)], m.MISSING - 1)
    values = m.overlap(near_a, near_b, k_eff)
    return Neighbours(int(picked.size), k_eff, float(values.mean()), m.distribution(values))


def _drift(sa: ModelState, sb: ModelState, items: Matching, picked: np.ndarray) -> Drift:
    padded = sa.factors != sb.factors
    if picked.size == 0:
        return Drift(0, m.distribution(np.empty(0)), m.distribution(np.empty(0)), padded, "no shared items")
    aligned, raw = m.procrustes_cosines(sa.V[items.a_rows[picked]], sb.V[items.b_rows[picked]])
    note = None
    if picked.size <= max(sa.factors, sb.factors):
        note = (f"only {picked.size} shared items for {max(sa.factors, sb.factors)} factors: the rotation "
                "can fit them almost exactly, so the aligned cosines overstate stability")
    return Drift(int(picked.size), m.distribution(aligned),
                 m.distribution(raw) if raw is not None else m.distribution(np.empty(0)), padded, note)
