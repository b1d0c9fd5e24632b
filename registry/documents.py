"""Rows -> the documented ``registry.json`` / ``bert_registry.json`` documents.

The row -> dict mappers here are the same ones the API returns, so the API and the files
cannot drift apart. Writing the files is :mod:`registry.export` (publishing, generations,
lock) and :mod:`registry.export_cache` (re-rendering only what a change touched).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .defaults import DEFAULT_METRIC
from .models import (
    ABTest,
    Alias,
    BertEmbedding,
    Model,
    Selection,
    Settings,
    utcnow,
)
from .queries import links_by_embedding, metrics_by_model
from .tags import tags_of
from .timestamps import format_timestamp as iso

REGISTRY_VERSION = "1.0"


def model_info(model: Model, metrics: dict[str, float], tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A model row as the doc's ``models[model_id]`` entry.

    ``description`` and ``tags`` are added only when set: extra keys legacy readers ignore.
    """
    info: dict[str, Any] = {
        "model_type": model.model_type,
        "version": model.version,
        "path": model.path,
        "created_at": iso(model.created_at),
        "data_version": model.data_version,
        "git_commit": model.git_commit,
        "hyperparameters": model.hyperparameters or {},
        "metrics": metrics,
        "training_info": model.training_info or {},
    }
    if model.baseline_comparison:
        info["baseline_comparison"] = model.baseline_comparison
    if model.bert_integration:
        info["bert_integration"] = model.bert_integration
    info["status"] = model.status
    _describe(info, model.description, tags)
    for key, value in (model.extra or {}).items():
        info.setdefault(key, value)
    return info


def current_best_info(model: Model, selection: Selection | None) -> dict[str, Any]:
    """The doc's ``current_best`` object."""
    return {
        "model_id": model.model_id,
        "model_type": model.model_type,
        "version": model.version,
        "path": model.path,
        "selection_metric": selection.metric if selection else None,
        "selection_value": selection.value if selection else None,
        "selected_at": iso(selection.selected_at) if selection else None,
        "selected_by": selection.selected_by if selection else None,
    }


def ab_test_info(test: ABTest) -> dict[str, Any]:
    """The doc's ``ab_test`` object."""
    info: dict[str, Any] = {
        "test_id": test.test_id,
        "start_time": iso(test.start_time),
        "control_model": test.control_model,
        "treatment_model": test.treatment_model,
        "traffic_split": test.traffic_split,
        "status": test.status,
    }
    if test.end_time is not None:
        info["end_time"] = iso(test.end_time)
    if test.promoted:
        info["promoted"] = test.promoted
    # Arms following an alias (extra keys; *_model is the alias's current target).
    if test.control_alias:
        info["control_alias"] = test.control_alias
    if test.treatment_alias:
        info["treatment_alias"] = test.treatment_alias
    return info


def _describe(info: dict[str, Any], description: str | None, tags: dict[str, str] | None) -> None:
    if description:
        info["description"] = description
    if tags:
        info["tags"] = dict(tags)


def embedding_info(embedding: BertEmbedding, linked_models: list[str], tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A BERT embeddings row as the doc's ``embeddings[version]`` entry (plus ``description``/``tags`` when set)."""
    info: dict[str, Any] = {
        "version": embedding.version,
        "path": embedding.path,
        "created_at": iso(embedding.created_at),
        "model_name": embedding.model_name,
        "num_items": embedding.num_items,
        "embedding_dim": embedding.embedding_dim,
        "data_version": embedding.data_version,
        "git_commit": embedding.git_commit,
        "generation_config": embedding.generation_config or {},
        "text_fields_used": embedding.text_fields_used or [],
        "linked_models": linked_models,
    }
    _describe(info, embedding.description, tags)
    for key, value in (embedding.extra or {}).items():
        info.setdefault(key, value)
    return info


def create_empty_registry() -> dict[str, Any]:
    """A fresh ``registry.json`` document with no models."""
    return {
        "current_best": None,
        "models": {},
        "metadata": {
            "registry_version": REGISTRY_VERSION,
            "last_updated": iso(utcnow()),
            "num_models": 0,
            "selection_criteria": DEFAULT_METRIC,
        },
    }


def validate_registry_schema(registry: Any) -> bool:
    """True when ``registry`` has the documented shape of ``registry.json``.

    Checks the three top-level keys, that ``models`` maps ids to dicts, that
    ``current_best`` is None, a dict naming a model_id, or a bare id string (the
    legacy form), and that ``metadata`` is a dict.
    """
    if not isinstance(registry, dict) or not {"current_best", "models", "metadata"} <= registry.keys():
        return False
    models, current, metadata = registry["models"], registry["current_best"], registry["metadata"]
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in models.items()):
        return False
    if not isinstance(metadata, dict):
        return False
    return current is None or isinstance(current, str) or (isinstance(current, dict) and "model_id" in current)


def build_registry_document(session: Session) -> tuple[dict[str, Any], int]:
    """The whole ``registry.json`` document and the generation it reflects (one query per table)."""
    settings = session.get(Settings, 1)
    assert settings is not None
    metrics = metrics_by_model(session)
    tags = tags_of(session, "model")
    models: dict[str, Any] = {}
    for model in session.scalars(select(Model).order_by(Model.created_at, Model.model_id)):
        models[model.model_id] = model_info(model, metrics.get(model.model_id, {}), tags.get(model.model_id))
    return assemble_registry_document(session, settings, models), settings.generation


def assemble_registry_document(session: Session, settings: Settings, models: Mapping[str, Any]) -> dict[str, Any]:
    """The document around its ``models`` mapping: current best, metadata, A/B test, aliases, extras."""
    current: dict[str, Any] | None = None
    if settings.current_model_id is not None:
        model = session.get(Model, settings.current_model_id)
        if model is not None:
            selection = session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None
            current = current_best_info(model, selection)
    document: dict[str, Any] = {
        "current_best": current,
        "models": models,
        "metadata": {
            "registry_version": settings.registry_version,
            "last_updated": iso(settings.last_updated),
            "num_models": len(models),
            "selection_criteria": settings.selection_criteria,
            "generation": settings.generation,
        },
    }
    if settings.artifact_store:
        document["metadata"]["artifact_store"] = settings.artifact_store  # model paths are URIs in it
    test = session.scalars(select(ABTest).order_by(ABTest.start_time.desc(), ABTest.test_id).limit(1)).first()
    if test is not None:
        document["ab_test"] = ab_test_info(test)
    named = dict(session.execute(select(Alias.name, Alias.model_id).order_by(Alias.name)).all())
    if named:
        document["aliases"] = named  # an extra key legacy readers ignore
    for key, value in (settings.extra or {}).items():
        document.setdefault(key, value)
    return document


def build_bert_document(session: Session) -> tuple[dict[str, Any], int]:
    """The whole ``bert_registry.json`` document and its generation."""
    settings = session.get(Settings, 1)
    assert settings is not None
    links = links_by_embedding(session)
    tags = tags_of(session, "embeddings")
    embeddings = {
        row.version: embedding_info(row, links.get(row.version, []), tags.get(row.version))
        for row in session.scalars(select(BertEmbedding).order_by(BertEmbedding.created_at, BertEmbedding.version))
    }
    document = {
        "current_best": settings.current_embeddings_version,
        "embeddings": embeddings,
        "metadata": {
            "registry_version": REGISTRY_VERSION,
            "last_updated": iso(settings.last_updated),
            "num_embeddings": len(embeddings),
            "generation": settings.generation,
        },
    }
    return document, settings.generation


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def render_entry(key: str, value: Any) -> str:
    """One line of the document's big mapping (``models`` or ``embeddings``), as :func:`render_document` writes it."""
    return f"    {_ENCODE(key)}: {_ENCODE(value)}"


def render_document(document: dict[str, Any], mapping_key: str, entries: Mapping[str, str] | None = None) -> str:
    """JSON text with one top-level key and one ``mapping_key`` entry per line.

    Each piece goes through the C encoder (``indent`` would force the slow pure-Python one),
    so exporting 10,000 models stays fast while the file stays diff- and grep-friendly.
    ``entries``: the ``mapping_key`` lines already rendered by :func:`render_entry`, in order
    (the incremental export re-renders only what changed).
    """
    parts = []
    for key, value in document.items():
        if key == mapping_key and isinstance(value, Mapping) and value:
            lines = entries.values() if entries is not None else (render_entry(k, v) for k, v in value.items())
            parts.append(f"  {_ENCODE(key)}: {{\n" + ",\n".join(lines) + "\n  }")
        else:
            parts.append(f"  {_ENCODE(key)}: {_ENCODE(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
