"""The ``list_models`` / ``search_models`` DataFrame, built from plain query rows.

Columns: ``model_id, model_type, version, status, created_at``, one column per metric
(alphabetical, NaN where a model lacks it), ``training_time``
(``training_info.training_time_seconds``), ``tags`` (a dict per model, empty when none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .export import iso
from .validation import finite_real

if TYPE_CHECKING:
    import pandas as pd

LIST_BASE_COLUMNS = ["model_id", "model_type", "version", "status", "created_at"]
SORT_KEY = "_created"


def models_frame(models: list[Any], metric_rows: list[tuple[str, str, float]], tags: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Rows ``(model_id, model_type, version, status, created_at, training_info)`` in their given order,
    with the metrics and tags joined; a hidden ``_created`` column keeps the raw time for sorting."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "model_id": [m[0] for m in models],
            "model_type": [m[1] for m in models],
            "version": [m[2] for m in models],
            "status": [m[3] for m in models],
            "created_at": [iso(m[4]) for m in models],
            SORT_KEY: [m[4] for m in models],
            "training_time": [finite_real((m[5] or {}).get("training_time_seconds")) for m in models],
        }
    )
    frame["training_time"] = frame["training_time"].astype(float)
    frame["tags"] = [dict(tags.get(m[0], {})) for m in models]
    if metric_rows:
        values = pd.DataFrame(metric_rows, columns=["model_id", "name", "value"]).pivot(
            index="model_id", columns="name", values="value"
        )
        frame = frame.join(values, on="model_id")
    return frame


def metric_columns(metric_rows: list[tuple[str, str, float]]) -> list[str]:
    """The metric column names, alphabetical."""
    return sorted({row[1] for row in metric_rows})


def public_columns(metric_names: list[str]) -> list[str]:
    """The documented column order."""
    return LIST_BASE_COLUMNS + metric_names + ["training_time", "tags"]
