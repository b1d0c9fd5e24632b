"""Request and result bodies of the operator actions: select-best, promote, rollback, archive, A/B tests, aliases."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...defaults import DEFAULT_METRIC


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
