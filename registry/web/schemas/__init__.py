"""Request and response bodies of the REST API; their class names are the OpenAPI schema names.

The names are part of the API contract (clients generate code from them): rename
one only with a version bump. ``tests/test_web_api.py`` pins the list.

The classes live by area: :mod:`.reads` (read endpoints and errors), :mod:`.actions`
(operator actions), :mod:`.evidence` (model diff, significance, A/B results); this
package re-exports them all.
"""

from __future__ import annotations

from .actions import (
    ABStartRequest,
    ABStopRequest,
    AliasDetail,
    AliasInfo,
    AliasMove,
    ArchiveResult,
    PromoteRequest,
    RollbackRequest,
    SelectBestRequest,
    SelectBestResult,
    SelectionResult,
)
from .evidence import (
    ABArmResult,
    ABTestResults,
    DiffCatalogue,
    DiffCatalogueSide,
    DiffChurn,
    DiffCompatibility,
    DiffCoverage,
    DiffCoverageSide,
    DiffDrift,
    DiffMetricRow,
    DiffNeighbours,
    MetricSignificance,
    ModelDiff,
    Significance,
)
from .reads import (
    ABRouting,
    ABTestInfo,
    ArtifactFileInfo,
    AuditEventInfo,
    ComparedModel,
    Comparison,
    CurrentBest,
    EmbeddingsVersion,
    ErrorDetail,
    ErrorResponse,
    MetricComparison,
    ModelDetail,
    ModelPage,
    ModelSummary,
    ParameterComparison,
    RegistryStats,
    RouteResult,
    SelectionEvent,
)

__all__ = [
    "ABArmResult",
    "ABRouting",
    "ABStartRequest",
    "ABStopRequest",
    "ABTestInfo",
    "ABTestResults",
    "AliasDetail",
    "AliasInfo",
    "AliasMove",
    "ArchiveResult",
    "ArtifactFileInfo",
    "AuditEventInfo",
    "ComparedModel",
    "Comparison",
    "CurrentBest",
    "DiffCatalogue",
    "DiffCatalogueSide",
    "DiffChurn",
    "DiffCompatibility",
    "DiffCoverage",
    "DiffCoverageSide",
    "DiffDrift",
    "DiffMetricRow",
    "DiffNeighbours",
    "EmbeddingsVersion",
    "ErrorDetail",
    "ErrorResponse",
    "MetricComparison",
    "MetricSignificance",
    "ModelDetail",
    "ModelDiff",
    "ModelPage",
    "ModelSummary",
    "ParameterComparison",
    "PromoteRequest",
    "RegistryStats",
    "RollbackRequest",
    "RouteResult",
    "SelectBestRequest",
    "SelectBestResult",
    "SelectionEvent",
    "SelectionResult",
    "Significance",
]
