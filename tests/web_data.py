"""A realistic registry for the web UI tests and screenshots: three model types trained
weekly over two months (imported from a registry.json so creation times spread out),
BERT embeddings linked to the BERT-ALS models, a selection history, aliases, tags, a
description, per-user evaluation files (one per model type: the versions of a type share
their folder), a stopped A/B test with a decided result and a running one with outcomes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from factories import make_embeddings_dir, make_model_dir
from registry import BERTEmbeddingsRegistry, ModelRegistry, create_empty_registry, write_user_eval

START = datetime(2025, 1, 6, 9, 30)
# (type, versions, ndcg@10 of the first version, weekly gain, factors)
FAMILIES = (("als", 8, 0.162, 0.0052, 64), ("bpr", 6, 0.148, 0.0046, 96), ("bert_als", 4, 0.171, 0.0075, 128))
# The factor files: small, but large enough for a meaningful diff. bpr and bert_als are
# perturbations of als (noise scale), so their recommendations overlap partly.
USERS, ITEMS, FACTORS = 600, 300, 16
NOISE = {"als": 0.0, "bpr": 0.55, "bert_als": 0.3}
# Per-user ndcg@10 shift against als (same users, shared difficulty): bpr is worse, bert_als a hair better.
EVAL_SHIFT = {"als": 0.0, "bpr": -0.021, "bert_als": 0.004}


def _write_family(folder: Path, model_type: str, seed: int) -> None:
    """The type's shared folder: factors (perturbed from als), id maps and a per-user evaluation."""
    make_model_dir(folder, model_type, num_users=USERS, num_items=ITEMS, factors=FACTORS, seed=seed, id_maps=True)
    base = np.random.default_rng(7)
    U, V = base.standard_normal((USERS, FACTORS)), base.standard_normal((ITEMS, FACTORS))
    noise = np.random.default_rng(100 + seed)
    for name, array in (("U", U), ("V", V)):
        perturbed = array + NOISE[model_type] * noise.standard_normal(array.shape)
        np.save(folder / f"{model_type}_{name}.npy", perturbed.astype(np.float32))
    difficulty = np.random.default_rng(11).beta(2, 8, USERS)  # the same users are hard for every model
    ndcg = np.clip(difficulty + EVAL_SHIFT[model_type] + noise.normal(0, 0.05, USERS), 0, 1)
    recall = np.clip(ndcg * 1.3 + noise.normal(0, 0.04, USERS), 0, 1)
    write_user_eval(folder, model_type, [f"u{i}" for i in range(USERS)], {"ndcg@10": ndcg, "recall@10": recall})


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
        _write_family(cf / model_type / "shared", model_type, seed=len(models))
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
    registry.set_alias("champion_bpr", "bpr_v6", reason="best bpr offline")
    registry.set_alias("challenger", "bert_als_v3", reason="first BERT candidate")
    registry.set_alias("challenger", "bert_als_v4", expected="bert_als_v3", reason="v4 beats v3 offline")
    registry.set_tag("als_v8", "stage", "production")
    registry.set_tag("als_v8", "team", "recs")
    registry.set_tag("bert_als_v4", "team", "recs")
    registry.set_tag("bert_als_v4", "uses", "bert_2025_03")
    registry.set_description("als_v8", "Weekly ALS retrain on the full interaction log (implicit feedback, alpha=40).")
    registry.start_ab_test("als_v8", "bpr_v6", 0.5, test_id="ab_bpr_v6")
    for day in range(6):  # bpr converts worse: a clear win for the control
        registry.record_ab_outcomes("ab_bpr_v6", "control", 20_000, 2_000 + 13 * day, batch_id=f"day{day}")
        registry.record_ab_outcomes("ab_bpr_v6", "treatment", 20_000, 1_780 + 11 * day, batch_id=f"day{day}")
    registry.stop_ab_test("ab_bpr_v6")
    registry.start_ab_test("als_v8", "bert_als_v4", 0.2, test_id="ab_bert_als_v4")
    for day in range(3):
        registry.record_ab_outcomes("ab_bert_als_v4", "control", 8_000, 800 + 9 * day, batch_id=f"day{day}")
        registry.record_ab_outcomes("ab_bert_als_v4", "treatment", 2_000, 214 + 3 * day, batch_id=f"day{day}")
    return registry
