"""Response bodies of the evidence endpoints: the model diff, per-user significance, A/B test results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class DiffCompatibility(BaseModel):
    """Can the two models be compared: types, factor dimensions, dtypes, shapes, id maps."""

    model_types: list[str]
    factors: list[int]
    dtypes: list[str]
    num_users: list[int]
    num_items: list[int]
    id_maps: dict[str, dict[str, bool]]
    interactions: list[bool]
    users_matched_by: str
    items_matched_by: str
    same_type: bool
    same_factors: bool
    warnings: list[str]


class DiffCatalogueSide(BaseModel):
    """Users or items of B against A: added (only in B), removed (only in A), kept."""

    matched_by: str
    added: int
    removed: int
    kept: int
    added_sample: list[Any]
    removed_sample: list[Any]


class DiffCatalogue(BaseModel):
    """Which users and items enter or leave."""

    users: DiffCatalogueSide
    items: DiffCatalogueSide
    disjoint_users: bool
    disjoint_items: bool


class DiffChurn(BaseModel):
    """How the top-k lists of shared users change (``churn`` = 1 - mean top-k overlap)."""

    users_compared: int
    full: bool
    k: int
    seen_excluded: str
    churn: float | None
    mean_overlap: float | None
    overlap: dict[str, Any]
    overlap_histogram: list[int]
    top1_changed: float | None
    mean_rbo: float | None
    rbo: dict[str, Any]
    note: str | None = None


class DiffNeighbours(BaseModel):
    """Overlap of shared items' top-k cosine neighbours."""

    items_compared: int
    k: int
    mean_overlap: float | None
    overlap: dict[str, Any]
    note: str | None = None


class DiffCoverageSide(BaseModel):
    """Coverage and popularity of one model's lists for the sampled users."""

    coverage_at_k: float | None
    distinct_items: int
    gini: float | None
    mean_popularity_rank: float | None
    mean_popularity_percentile: float | None


class DiffCoverage(BaseModel):
    """Coverage of A and B on the same users."""

    a: DiffCoverageSide
    b: DiffCoverageSide


class DiffDrift(BaseModel):
    """Cosine similarity of shared items' vectors after orthogonal Procrustes alignment (and raw)."""

    items_compared: int
    aligned: dict[str, Any]
    raw: dict[str, Any]
    padded: bool
    note: str | None = None


class DiffMetricRow(BaseModel):
    """A registered metric of A and B; ``diff`` = b - a, ``relative`` = diff / |a|."""

    name: str
    a: float | None
    b: float | None
    diff: float | None
    relative: float | None


class ModelDiff(BaseModel):
    """What changes if ``model_b`` replaces ``model_a`` (see docs/model-diff.md); ``stored`` says
    whether the registry already held this report (else it was computed for this request)."""

    model_a: str
    model_b: str
    key: str
    params: dict[str, Any]
    computed_at: str
    seconds: float
    compatibility: DiffCompatibility
    catalogue: DiffCatalogue
    churn: DiffChurn
    neighbours: DiffNeighbours
    coverage: DiffCoverage
    drift: DiffDrift
    metrics: list[DiffMetricRow]
    stored: bool
    summary: str


class MetricSignificance(BaseModel):
    """One metric of B against A on the same users: ``difference`` = mean_b - mean_a with its interval."""

    metric: str
    method: str
    confidence: float
    n_users: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    relative: float | None
    relative_ci_low: float | None
    relative_ci_high: float | None
    resamples: int | None = None
    seed: int | None = None


class Significance(BaseModel):
    """Per-user comparison of two models on every metric both evaluation files carry."""

    model_a: str
    model_b: str
    method: str
    confidence: float
    metrics: list[MetricSignificance]
    only_a: list[str]
    only_b: list[str]


class ABArmResult(BaseModel):
    """One arm's totals; ``rate`` for conversions, ``mean`` for values; the treatment adds its lift."""

    arm: Literal["control", "treatment"]
    model_id: str
    exposures: int
    rate: float | None = None
    mean: float | None = None
    lift: float | None = None
    lift_ci_low: float | None = None
    lift_ci_high: float | None = None
    p_value: float | None = None


class ABTestResults(BaseModel):
    """Which arm won (see docs/statistics.md): the difference and lift with their interval, the
    p-value, the exposures still needed for the minimum detectable effect, and a verdict."""

    test_id: str
    status: str
    metric: Literal["conversion", "value"]
    method: Literal["fixed_horizon", "msprt"]
    method_name: str
    confidence: float
    minimum_detectable_effect: float
    traffic_split: float
    batches: int
    arms: list[ABArmResult]
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    p_value: float | None
    planned_exposures: int | None
    exposures_needed: int | None
    verdict: Literal["keep running", "treatment wins", "control wins", "no detectable difference"]
    final: bool
    decided_at_exposures: int | None
