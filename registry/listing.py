"""The ``list_models`` / ``search_models`` DataFrame, built from plain query rows.

Columns: ``model_id, model_type, version, status, created_at``, one column per metric
(alphabetical, NaN where a model lacks it), ``training_time``
(``training_info.training_time_seconds``), ``tags`` (a dict per model, empty when none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .timestamps import format_timestamp as iso
from .validation import finite_real

if TYPE_CHECKING:
    import pandas as pd

LIST_BASE_COLUMNS = ["model_id", "model_type", "version", "status", "created_at"]
SORT_KEY = "_created"


def models_frame(models: Sequence[Any], metric_rows: list[tuple[str, str, float]], tags: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Rows ``(model_id, model_type, version, status, created_at, training_info)`` in their given order,
    with the metrics and tags joined; a hidden ``_created`` column keeps the raw time for sorting."""
    import pandas as pd

    # Built from plain records: pandas' pivot + join cost ~40 ms even for a 100-row page.
    names = metric_columns(metric_rows)
    columns = [*public_columns(names), SORT_KEY]
    frame = pd.DataFrame(models_records(models, metric_rows, tags, names), columns=columns)
    for name in [*names, "training_time"]:
        frame[name] = frame[name].astype(float)  # None -> NaN, as the documented frame has it
    return frame


def models_records(
    models: Sequence[Any], metric_rows: list[tuple[str, str, float]], tags: dict[str, dict[str, str]], metric_names: list[str],
) -> list[dict[str, Any]]:
    """The same rows as :func:`models_frame`, as plain dicts in :func:`public_columns` order (None where
    the frame has NaN), plus the hidden ``_created`` key; no pandas, for callers that only print them."""
    values: dict[str, dict[str, float]] = {}
    for model_id, name, value in metric_rows:
        values.setdefault(model_id, {})[name] = value
    records = []
    for model_id, model_type, version, status, created_at, training_info in models:
        metrics = values.get(model_id, {})
        record: dict[str, Any] = {"model_id": model_id, "model_type": model_type, "version": version,
                                  "status": status, "created_at": iso(created_at)}
        record.update((name, metrics.get(name)) for name in metric_names)
        record["training_time"] = finite_real((training_info or {}).get("training_time_seconds"))
        record["tags"] = dict(tags.get(model_id, {}))
        record[SORT_KEY] = created_at
        records.append(record)
    return records


def sort_records(records: list[dict[str, Any]], key: str, *, ascending: bool) -> list[dict[str, Any]]:
    """``records`` by ``key`` like ``DataFrame.sort_values(kind="stable", na_position="last")``:
    ties keep their order in either direction, missing values (None, NaN) go last."""
    present = [r for r in records if r.get(key) is not None and r.get(key) == r.get(key)]
    missing = [r for r in records if not (r.get(key) is not None and r.get(key) == r.get(key))]
    return sorted(present, key=lambda r: r[key], reverse=not ascending) + missing


def metric_columns(metric_rows: list[tuple[str, str, float]]) -> list[str]:
    """The metric column names, alphabetical."""
    return sorted({row[1] for row in metric_rows})


def public_columns(metric_names: list[str]) -> list[str]:
    """The documented column order."""
    return LIST_BASE_COLUMNS + metric_names + ["training_time", "tags"]
