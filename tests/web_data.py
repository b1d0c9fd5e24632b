"""A realistic registry for the web UI tests and screenshots: three model types trained
weekly over two months (imported from a registry.json so creation times spread out),
BERT embeddings linked to the BERT-ALS models, a selection history and an A/B test."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from factories import make_embeddings_dir, make_model_dir

from registry import BERTEmbeddingsRegistry, ModelRegistry, create_empty_registry

START = datetime(2025, 1, 6, 9, 30)
# (type, versions, ndcg@10 of the first version, weekly gain, factors)
FAMILIES = (("als", 8, 0.162, 0.0052, 64), ("bpr", 6, 0.148, 0.0046, 96), ("bert_als", 4, 0.171, 0.0075, 128))


def _entry(model_type: str, index: int, base: float, gain: float, factors: int) -> dict:  # type: ignore[type-arg]
    wobble = ((index * 37) % 7 - 3) / 1000
    ndcg = round(base + gain * index + wobble, 4)
    created = START + timedelta(days=7 * index + {"als": 0, "bpr": 2, "bert_als": 4}[model_type] + (28 if model_type == "bert_als" else 0))
    return {
        "model_type": model_type,
        "version": f"v{index + 1}",
        "path": f"artifacts/cf/{model_type}/shared",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S"),
        "data_version": f"{(created - timedelta(days=1)):%Y-%m-%d}_{(index * 2654435761) % 16**6:06x}",
        "git_commit": f"{(index * 40503 + factors * 7919) % 16**8:08x}c0ffee{index:02d}d15ea5e",
        "hyperparameters": {"factors": factors + (16 if index >= 4 else 0), "regularization": 0.01 if index % 2 else 0.05,
                            "iterations": 15 + 5 * (index % 3), "alpha": 40 if model_type == "als" else None},
        "metrics": {"ndcg@10": ndcg, "recall@10": round(ndcg * 1.32 + wobble, 4),
                    "recall@20": round(ndcg * 1.85 - wobble, 4), "coverage": round(0.31 + 0.012 * index - wobble * 3, 4)},
        "training_info": {"training_time_seconds": round(60 + factors * 0.6 + 4.5 * index, 1), "num_users": 26000,
                          "num_items": 2200},
        "status": "archived" if model_type == "bpr" and index < 2 else "active",
    }


def build_registry(root: Path) -> ModelRegistry:
    """Create the registry under ``root`` (``artifacts/cf/registry.json``) and return it."""
    cf = root / "artifacts" / "cf"
    models = {}
    for model_type, count, base, gain, factors in FAMILIES:
        make_model_dir(cf / model_type / "shared", model_type, seed=len(models))
        for index in range(count):
            entry = _entry(model_type, index, base, gain, factors)
            if entry["hyperparameters"]["alpha"] is None:
                del entry["hyperparameters"]["alpha"]
            models[f"{model_type}_v{index + 1}"] = entry
    best = "als_v7"
    document = create_empty_registry()
    document["models"] = models
    document["current_best"] = best  # the original deploy script's bare-id form
    cf.mkdir(parents=True, exist_ok=True)
    (cf / "registry.json").write_text(json.dumps(document), encoding="utf-8")
    registry = ModelRegistry(cf / "registry.json", root=root)  # a new database imports the file once
    make_embeddings_dir(cf / "bert" / "2025_02", num_items=2200, dim=32)
    make_embeddings_dir(cf / "bert" / "2025_03", num_items=2200, dim=32, seed=1)
    bert = BERTEmbeddingsRegistry(cf / "registry.json", root=root)
    bert.register_embeddings("artifacts/cf/bert/2025_02", "sentence-transformers/all-MiniLM-L6-v2", 2200, 32,
                             version="bert_2025_02")
    bert.register_embeddings("artifacts/cf/bert/2025_03", "sentence-transformers/all-MiniLM-L6-v2", 2200, 32,
                             version="bert_2025_03")
    for index in range(4):
        bert.link_to_model("bert_2025_02" if index < 2 else "bert_2025_03", f"bert_als_v{index + 1}")
    registry.select_best_model("ndcg@10", model_type="als")
    registry.promote_model("bert_als_v3", reason="offline eval + canary")
    registry.rollback(reason="latency regression")
    registry.start_ab_test("als_v8", "bert_als_v4", 0.2, test_id="ab_bert_als_v4")
    return registry
