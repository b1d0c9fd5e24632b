"""Response bodies of the read endpoints (models, current best, stats, embeddings, audit, comparisons, routing) and of errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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
