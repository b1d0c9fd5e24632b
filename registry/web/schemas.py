"""Request and response bodies of the REST API; their class names are the OpenAPI schema names.

The names are part of the API contract (clients generate code from them): rename
one only with a version bump. ``tests/test_web_api.py`` pins the list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..defaults import DEFAULT_METRIC


class ErrorDetail(BaseModel):
    """A typed registry error: ``code`` is stable, ``type`` the Python class, ``message`` for people."""

    code: str
    type: str
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body."""

    error: ErrorDetail


class ModelSummary(BaseModel):
    """One leaderboard row."""

    model_id: str
    model_type: str
    version: str
    status: str
    created_at: str | None
    metrics: dict[str, float]
    training_time: float | None
    is_current: bool
    aliases: list[str] = Field(default_factory=list, description="Aliases pointing at the model, current_best first.")
    tags: dict[str, str] = Field(default_factory=dict)


class ModelPage(BaseModel):
    """One page of models."""

    items: list[ModelSummary]
    total: int
    page: int
    per_page: int
    pages: int
    sort: str
    order: Literal["asc", "desc"]
    current_best: str | None
    metric_names: list[str]


class ArtifactFileInfo(BaseModel):
    """A file recorded at registration."""

    file_name: str
    size_bytes: int
    sha256: str


class SelectionEvent(BaseModel):
    """One change of the current best."""

    id: int
    model_id: str
    metric: str | None
    value: float | None
    previous_model_id: str | None
    selected_at: str | None
    selected_by: str
    reason: str | None
    is_current: bool


class ABRouting(BaseModel):
    """Share of users each arm receives now."""

    control: float
    treatment: float


class ABTestInfo(BaseModel):
    """An A/B test (the ``ab_test`` object of ``registry.json``) with its routing."""

    test_id: str
    start_time: str | None
    control_model: str
    treatment_model: str
    traffic_split: float
    status: str
    end_time: str | None = None
    promoted: str | None = None
    routing: ABRouting


class ModelDetail(BaseModel):
    """Everything about one model: metrics, hyperparameters, training info and lineage."""

    model_id: str
    model_type: str
    version: str
    path: str
    status: str
    created_at: str | None
    data_version: str | None
    git_commit: str | None
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    training_info: dict[str, Any]
    baseline_comparison: dict[str, Any] | None = None
    bert_integration: dict[str, Any] | None = None
    files: list[ArtifactFileInfo]
    embeddings: list[str]
    is_current: bool
    selections: list[SelectionEvent]
    ab_tests: list[ABTestInfo]
    aliases: list[str] = Field(default_factory=list, description="Aliases pointing at the model, current_best first.")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None


class CurrentBest(BaseModel):
    """The current best (the ``current_best`` object of ``registry.json``)."""

    model_id: str
    model_type: str
    version: str
    path: str
    selection_metric: str | None
    selection_value: float | None
    selected_at: str | None
    selected_by: str | None


class RegistryStats(BaseModel):
    """Counts and pointers."""

    total_models: int
    active_models: int
    archived_models: int
    failed_models: int
    by_type: dict[str, int]
    current_best: str | None
    last_updated: str | None
    generation: int
    total_embeddings: int
    current_embeddings: str | None


class EmbeddingsVersion(BaseModel):
    """A BERT embeddings version and the CF models linked to it."""

    version: str
    model_name: str
    num_items: int
    embedding_dim: int
    created_at: str | None
    is_current: bool
    linked_models: list[str]


class AuditEventInfo(BaseModel):
    """One audit event (``actor`` names who acted; web actions read ``web:<identity> via <server>``)."""

    id: int
    at: str
    action: str
    target: str
    summary: str
    details: dict[str, Any]
    actor: str


class ComparedModel(BaseModel):
    """A compared model's identity."""

    model_id: str
    model_type: str
    version: str
    status: str
    created_at: str | None
    data_version: str | None
    is_current: bool


class MetricComparison(BaseModel):
    """One metric across the compared models; ``differences`` are versus the first model."""

    name: str
    values: dict[str, float | None]
    differences: dict[str, float | None]


class ParameterComparison(BaseModel):
    """One hyperparameter across the compared models."""

    name: str
    values: dict[str, Any]
    differs: bool


class Comparison(BaseModel):
    """Two or more models side by side."""

    model_ids: list[str]
    models: list[ComparedModel]
    metrics: list[MetricComparison]
    hyperparameters: list[ParameterComparison]


class RouteResult(BaseModel):
    """Which model serves a user now."""

    user_id: str
    model_id: str
    test_id: str | None
    arm: Literal["control", "treatment"] | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectBestRequest(_Request):
    """Body of ``POST /api/select-best``."""

    metric: str = DEFAULT_METRIC
    min_improvement: float = 0.0
    model_type: str | None = None
    max_churn: float | None = Field(default=None, description="Refuse a winner whose churn@10 against the current best "
                                    "exceeds this fraction (409 churn_limit).")
    confidence: float | None = Field(default=None, description="Replace the current best only when the lower bound of "
                                     "this interval of the improvement (per-user evaluation) is above min_improvement.")
    require_evaluation: bool = True


class SelectBestResult(BaseModel):
    """``selected`` is False (and nothing changed) when no active model qualifies (with
    ``confidence``: also when the winner is not significantly better; ``comparison`` says why)."""

    selected: bool
    model_id: str | None
    metric: str
    value: float | None
    comparison: dict[str, Any] | None = None


class PromoteRequest(_Request):
    """Body of ``POST /api/models/{model_id}/promote``; ``max_churn`` refuses a model whose churn@10
    against the current best exceeds it (409 ``churn_limit``) unless ``force`` (with a reason)."""

    reason: str | None = Field(default=None, max_length=1024)
    max_churn: float | None = None
    force: bool = False


class RollbackRequest(_Request):
    """Body of ``POST /api/rollback``: ``to`` a model id, or the previous current best."""

    to: str | None = None
    reason: str | None = Field(default=None, max_length=1024)


class SelectionResult(BaseModel):
    """The current best after a promote or rollback."""

    model_id: str
    metric: str | None
    value: float | None


class ArchiveResult(BaseModel):
    """A model after archiving."""

    model_id: str
    status: str


class ABStartRequest(_Request):
    """Body of ``POST /api/ab-tests``."""

    control_model: str
    treatment_model: str
    traffic_split: float
    test_id: str | None = None


class ABStopRequest(_Request):
    """Body of ``POST /api/ab-tests/{test_id}/stop``: ``promote`` an arm, or ``promote_winner``
    (the arm the results declare the winner; without a winner nothing changes: 422)."""

    promote: Literal["control", "treatment"] | None = None
    promote_winner: bool = False


class AliasInfo(BaseModel):
    """An alias and the model it points at; who moved it last, when and why."""

    alias: str
    model_id: str
    model_type: str | None
    updated_at: str | None
    updated_by: str | None
    reason: str | None


class AliasMove(BaseModel):
    """One move of an alias: ``previous_model_id`` -> ``model_id`` (None: the alias was deleted)."""

    id: int
    at: str | None
    by: str | None
    model_id: str | None
    previous_model_id: str | None
    reason: str | None
    selected_by: str
    metric: str | None
    value: float | None


class AliasDetail(BaseModel):
    """One alias: its target now (None after a deletion) and its moves, newest first."""

    alias: str
    model_id: str | None
    model_type: str | None
    version: str | None
    history: list[AliasMove]


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
