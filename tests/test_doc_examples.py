"""The doc's code examples run as written (ModelRegistry, Quick Start, Training integration,
Troubleshooting), with ``from registry import ...`` in place of ``from recsys.cf.registry import ...``.

Each test runs in its own working folder holding real artifact folders at the doc's
relative paths. Examples that name placeholder ids (``'als_v1_...'``) or an embeddings
version get those registered first; everything between the "as written" markers is
the doc's text, unchanged apart from the import line.

On PostgreSQL the doc's argument-free ``ModelRegistry()`` reaches the database
through ``CFREG_DATABASE_URL``; on SQLite it uses the default ``registry.db``
beside ``artifacts/cf/registry.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import registry as registry_package
from factories import make_embeddings_dir, make_model_dir
from registry import REQUIRED_MODEL_FILES, ModelRegistry


@pytest.fixture
def doc_env(backend: str, database_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder; on PostgreSQL, ``CFREG_DATABASE_URL`` points at this test's schema."""
    if backend == "postgres":
        monkeypatch.setenv("CFREG_DATABASE_URL", database_url)
    return workdir


def artifacts(relative: str, model_type: str = "als", seed: int = 0) -> str:
    make_model_dir(Path(relative), model_type, seed=seed)
    return relative


def preregister(model_id_version: str, ndcg: float, model_type: str = "als") -> str:
    """Register a model whose id the doc uses as a placeholder (``als_v1_...``)."""
    path = artifacts(f"artifacts/cf/{model_type}/{model_id_version}", model_type)
    return ModelRegistry().register_model(
        path, model_type, {"factors": 8}, {"recall@10": ndcg + 0.05, "ndcg@10": ndcg, "coverage": 0.3},
        {"training_time_seconds": 10.0}, version=model_id_version,
    )


# ---------------------------------------------------------------------- Quick Start


def test_quick_start(doc_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts("artifacts/cf/als/v2_20250116")

    # --- as written (1. Dang Ky Model Moi)
    from registry import ModelRegistry

    registry = ModelRegistry()

    model_id = registry.register_model(
        artifacts_path='artifacts/cf/als/v2_20250116',
        model_type='als',
        hyperparameters={'factors': 128, 'regularization': 0.01},
        metrics={'recall@10': 0.245, 'ndcg@10': 0.195},
        training_info={'training_time_seconds': 102.8, 'num_users': 26000}
    )
    # --- as written (2. Chon Best Model)
    best = registry.select_best_model(metric='ndcg@10')
    print(f"Best model: {best['model_id']}, NDCG@10: {best['value']}")
    # --- as written (3. Load Model cho Serving)
    from registry import get_loader

    loader = get_loader()
    U, V, metadata = loader.load_current_best()
    # ---

    assert capsys.readouterr().out == f"Best model: {model_id}, NDCG@10: 0.195\n"
    assert (doc_env / "artifacts/cf/registry.json").exists()
    assert json.loads((doc_env / "artifacts/cf/registry.json").read_text())["current_best"]["model_id"] == model_id
    assert U.shape == (40, 8) and V.shape == (25, 8)
    assert metadata["num_users"] == 40


# ---------------------------------------------------------------------- ModelRegistry section


def test_initialization_options(doc_env: Path) -> None:
    # --- as written
    from registry import ModelRegistry, get_registry

    # Option 1: Direct instantiation
    registry = ModelRegistry(
        registry_path='artifacts/cf/registry.json',
        auto_create=True  # Tao moi neu khong ton tai
    )

    # Option 2: Singleton pattern (recommended)
    registry = get_registry()
    # ---
    assert registry is get_registry()
    assert Path(registry.registry_path) == doc_env / "artifacts/cf/registry.json"
    assert registry.get_registry_stats()["total_models"] == 0


def test_register_model_and_select_best_model(doc_env: Path) -> None:
    artifacts("artifacts/cf/als/v2_20250116")
    registry = ModelRegistry()
    # the example's bert_integration names this embeddings version: it has to exist
    from registry import get_bert_registry

    make_embeddings_dir(Path("artifacts/cf/bert/v1"), num_items=25, dim=16)
    get_bert_registry().register_embeddings(
        embedding_path="artifacts/cf/bert/v1", model_name="vinai/phobert-base", num_items=25, embedding_dim=16,
        version="bert_v1_20250115",
    )

    # --- as written (register_model)
    model_id = registry.register_model(
        artifacts_path='artifacts/cf/als/v2_20250116',
        model_type='als',  # 'als', 'bpr', 'bert_als'

        hyperparameters={
            'factors': 128,
            'regularization': 0.01,
            'iterations': 20,
            'alpha': 60
        },

        metrics={
            'recall@10': 0.245,
            'recall@20': 0.325,
            'ndcg@10': 0.195,
            'ndcg@20': 0.229,
            'coverage': 0.310
        },

        training_info={
            'training_time_seconds': 102.8,
            'num_users': 26000,
            'num_items': 2200,
            'num_train_interactions': 320000
        },

        data_version='abc123...',  # Hash tu Task 01
        git_commit='ghi789...',    # Auto-detect neu None

        baseline_comparison={
            'baseline_type': 'popularity',
            'improvement_ndcg@10': 0.912
        },

        bert_integration={  # Optional, cho BERT-enhanced models
            'embeddings_version': 'bert_v1_20250115',
            'projection_method': 'svd',
            'explained_variance': 0.873
        },

        version=None,     # Auto-generated: v_{YYYYMMDD}_{HHMMSS}
        overwrite=False   # Neu True, ghi de model cung ID
    )
    # --- as written (select_best_model)
    best = registry.select_best_model(
        metric='ndcg@10',           # Metric de compare
        min_improvement=0.1,        # Minimum 10% improvement over baseline
        model_type=None             # Filter by type (None = all)
    )
    # ---

    assert model_id.startswith("als_v_")
    info = registry.get_model(model_id)
    assert info["metrics"]["coverage"] == 0.310 and info["data_version"] == "abc123..."
    assert info["git_commit"] == "ghi789..." and info["bert_integration"]["projection_method"] == "svd"
    assert set(best) == {"model_id", "model_info", "metric", "value"}
    assert best["model_id"] == model_id and best["metric"] == "ndcg@10" and best["value"] == 0.195
    assert best["model_info"]["baseline_comparison"]["improvement_ndcg@10"] == 0.912
    linked = get_bert_registry().list_embeddings(include_linked_models=True)[0]["linked_models"]
    assert linked == [model_id]


def test_register_model_documented_errors(doc_env: Path) -> None:
    registry = ModelRegistry()
    (doc_env / "artifacts/cf/als/empty").mkdir(parents=True)
    with pytest.raises(ValueError, match="missing required file"):
        registry.register_model("artifacts/cf/als/empty", "als", {}, {}, {})
    with pytest.raises(ValueError, match="Unknown model_type 'svd'"):
        registry.register_model("artifacts/cf/als/empty", "svd", {}, {}, {})


def test_list_models(doc_env: Path) -> None:
    preregister("v1_20250115_103000", 0.189)
    preregister("v2_20250116_141500", 0.195)
    preregister("v1_20250115_120000", 0.150, model_type="bpr")
    registry = ModelRegistry()

    # --- as written
    import pandas as pd

    # List all models
    df = registry.list_models()

    # Filter va sort
    als_models = registry.list_models(
        model_type='als',
        status='active',
        sort_by='ndcg@10',
        ascending=False
    )
    # ---

    assert isinstance(df, pd.DataFrame) and len(df) == 3
    for column in ("model_id", "model_type", "version", "status", "created_at", "recall@10", "ndcg@10",
                   "coverage", "training_time"):
        assert column in df.columns
    assert list(als_models["model_id"]) == ["als_v2_20250116_141500", "als_v1_20250115_103000"]


def test_archive_and_delete_model(doc_env: Path) -> None:
    preregister("v1_20250115_103000", 0.189)
    preregister("v2_20250116_141500", 0.195)
    registry = ModelRegistry()
    registry.select_best_model(metric="ndcg@10")

    # --- as written (archive_model)
    success = registry.archive_model('als_v1_20250115_103000')
    # ---
    assert success is True
    assert registry.get_model("als_v1_20250115_103000")["status"] == "archived"
    assert registry.archive_model("als_v2_20250116_141500") is False  # the current best

    # --- as written (delete_model)
    success = registry.delete_model(
        model_id='als_v1_20250115_103000',
        delete_files=False  # True de xoa ca artifact files
    )
    # ---
    assert success is True
    assert registry.get_model("als_v1_20250115_103000") is None
    assert Path("artifacts/cf/als/v1_20250115_103000/als_U.npy").exists()
    with pytest.raises(ValueError):
        registry.delete_model("als_v2_20250116_141500")


def test_compare_models(doc_env: Path) -> None:
    preregister("v1_...", 0.189)
    preregister("v2_...", 0.195)
    preregister("v1_...", 0.150, model_type="bpr")
    registry = ModelRegistry()

    # --- as written
    df = registry.compare_models(
        model_ids=['als_v1_...', 'als_v2_...', 'bpr_v1_...'],
        metrics=['recall@10', 'ndcg@10', 'coverage']
    )
    # ---

    assert list(df.columns[:6]) == ["model_id", "model_type", "factors", "recall@10", "ndcg@10", "coverage"]
    assert list(df["model_id"]) == ["als_v1_...", "als_v2_...", "bpr_v1_..."]
    assert list(df["ndcg@10"]) == [0.189, 0.195, 0.150]
    assert list(df["factors"]) == [8, 8, 8]


def test_get_registry_stats(doc_env: Path) -> None:
    preregister("v1_20250115_103000", 0.189)
    preregister("v2_20250116_141500", 0.195)
    preregister("v1_20250115_120000", 0.150, model_type="bpr")
    registry = ModelRegistry()
    registry.select_best_model(metric="ndcg@10")
    registry.archive_model("bpr_v1_20250115_120000")

    # --- as written
    stats = registry.get_registry_stats()
    # ---

    assert stats["total_models"] == 3 and stats["active_models"] == 2 and stats["archived_models"] == 1
    assert stats["by_type"] == {"als": 2, "bpr": 1}
    assert stats["current_best"] == "als_v2_20250116_141500"
    assert isinstance(stats["last_updated"], str)


# ---------------------------------------------------------------------- Integration with Training


def test_training_script_example(doc_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    Path("data/processed").mkdir(parents=True)
    Path("data/processed/interactions.parquet").write_bytes(b"user,item\n1,2\n")
    Path("data/processed/user_item_mappings.json").write_text('{"users": [1], "items": [2]}')

    def save_artifacts(U, V, params, metrics, metadata, output_path):  # the user's own function
        folder = Path(output_path)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "als_U.npy", U)
        np.save(folder / "als_V.npy", V)
        (folder / "als_params.json").write_text(json.dumps(params))
        (folder / "als_metadata.json").write_text(json.dumps(metadata))

    # --- as written, with "# ... training code ..." filled in
    from registry import ModelRegistry
    from registry.utils import compute_data_version, get_git_commit

    def train_and_register():
        # ... training code ...
        num_users, num_items, factors = 30, 20, 4
        rng = np.random.default_rng(0)
        U = rng.standard_normal((num_users, factors)).astype(np.float32)
        V = rng.standard_normal((num_items, factors)).astype(np.float32)
        params = {"factors": factors, "regularization": 0.01}
        metrics = {"recall@10": np.float32(0.245), "ndcg@10": np.float32(0.195)}
        metadata = {"num_users": num_users, "num_items": num_items, "factors": factors}
        output_path = "artifacts/cf/als/v3_trained"
        elapsed_time = 1.25

        # Save artifacts
        save_artifacts(U, V, params, metrics, metadata, output_path)

        # Compute data version
        data_version = compute_data_version([
            'data/processed/interactions.parquet',
            'data/processed/user_item_mappings.json'
        ])

        # Register model
        registry = ModelRegistry()
        model_id = registry.register_model(  # noqa: F841 (as written)
            artifacts_path=output_path,
            model_type='als',
            hyperparameters=params,
            metrics=metrics,
            training_info={
                'training_time_seconds': elapsed_time,
                'num_users': num_users,
                'num_items': num_items
            },
            data_version=data_version,
            git_commit=get_git_commit()
        )

        # Auto-select if improvement
        best = registry.select_best_model(
            metric='ndcg@10',
            min_improvement=0.05
        )

        if best:
            print(f"Selected: {best['model_id']}")
    # ---

    train_and_register()
    registry = ModelRegistry()
    (model_id,) = registry.models
    info = registry.models[model_id]
    assert info["metrics"] == {"recall@10": 0.245, "ndcg@10": 0.195}
    assert info["data_version"] == compute_data_version(
        ["data/processed/interactions.parquet", "data/processed/user_item_mappings.json"]
    )
    assert info["training_info"] == {"training_time_seconds": 1.25, "num_users": 30, "num_items": 20}
    # No baseline_comparison was passed, so min_improvement=0.05 finds no eligible model
    # (docs/registry.md, "Selecting the best model"): nothing is selected and nothing printed.
    assert capsys.readouterr().out == ""
    assert registry.get_current_best() is None


# ---------------------------------------------------------------------- Troubleshooting


def test_troubleshooting_model_not_found(doc_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preregister("v1_...", 0.189)
    registry = ModelRegistry()

    # --- as written (1. "Model not found")
    # Check model exists
    models = registry.list_models()
    print(models['model_id'].tolist())

    # Check file paths
    import os
    model_info = registry.models['als_v1_...']
    print(os.path.exists(model_info['path']))
    # ---

    assert capsys.readouterr().out == "['als_v1_...']\nTrue\n"


def test_troubleshooting_cannot_archive_current_best(doc_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import register_model_type

    # 'old_model_id' is a model of a type named "old" (model_id = f"{model_type}_{version}")
    monkeypatch.setitem(REQUIRED_MODEL_FILES, "old", [])  # removed again after the test
    register_model_type("old")
    registry = ModelRegistry()
    old = registry.register_model(artifacts("artifacts/cf/old/model_id", "old"), "old", {}, {"ndcg@10": 0.18}, {},
                                  version="model_id")
    registry.select_best_model(metric="ndcg@10")
    assert old == "old_model_id" and registry.archive_model(old) is False
    preregister("v2_20250116_141500", 0.195)  # a better model arrives

    # --- as written (2. "Cannot archive current_best")
    # Select different model first
    registry.select_best_model(metric='ndcg@10')
    # Then archive old model
    registry.archive_model('old_model_id')
    # ---

    assert registry.get_current_best()["model_id"] == "als_v2_20250116_141500"
    assert registry.get_model("old_model_id")["status"] == "archived"


def test_troubleshooting_missing_required_files(doc_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts_path = artifacts("artifacts/cf/als/v1_20250115_103000")
    os.remove(f"{artifacts_path}/als_params.json")

    # --- as written (3. "Missing required files")
    # Check required files exist
    from registry import REQUIRED_MODEL_FILES

    for file in REQUIRED_MODEL_FILES['als']:
        path = f"{artifacts_path}/{file}"
        print(f"{file}: {'✓' if os.path.exists(path) else '✗'}")
    # ---

    assert capsys.readouterr().out.splitlines() == [
        "als_U.npy: ✓", "als_V.npy: ✓", "als_params.json: ✗", "als_metadata.json: ✓"
    ]


def test_troubleshooting_cache_miss_performance(doc_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preregister("v1_...", 0.189)
    preregister("v2_...", 0.195)
    ModelRegistry().select_best_model(metric="ndcg@10")
    from registry import get_loader

    loader = get_loader()

    # --- as written (4. "Cache miss performance")
    # Preload models
    loader.preload_models(['als_v1_...', 'als_v2_...'])

    # Check cache stats
    stats = loader.get_stats()
    print(f"Hit rate: {stats['cache_hit_rate']:.1%}")
    # ---

    assert capsys.readouterr().out.startswith("Hit rate: ")
    assert set(stats["cached_models"]) >= {"als_v1_...", "als_v2_..."}


DEBUG_COMMANDS = {
    "list": "from registry import get_registry; print(get_registry().list_models())",
    "current_best": "from registry import get_registry; print(get_registry().registry.get('current_best'))",
    "stats": "from registry import get_registry; print(get_registry().get_registry_stats())",
    "verify": "from registry import get_loader; print(get_loader().get_current_model())",
}


@pytest.mark.slow
def test_troubleshooting_debug_commands(doc_env: Path) -> None:
    preregister("v2_20250116_141500", 0.195)
    preregister("v1_20250115_103000", 0.189)
    ModelRegistry().select_best_model(metric="ndcg@10")
    # One fresh interpreter runs the four one-liners (as `python -c` would), each in a clean namespace.
    driver = (
        "import json, sys\n"
        "for name, command in json.loads(sys.argv[1]).items():\n"
        "    print('=== ' + name)\n"
        "    exec(command, {})\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", driver, json.dumps(DEBUG_COMMANDS)], cwd=doc_env, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = dict(part.split("\n", 1) for part in result.stdout.split("=== ")[1:])
    assert set(out) == set(DEBUG_COMMANDS)
    assert "als_v2_20250116_141500" in out["list"] and "als_v1_20250115_103000" in out["list"]
    assert "'model_id': 'als_v2_20250116_141500'" in out["current_best"]
    assert "'total_models': 2" in out["stats"] and "'current_best': 'als_v2_20250116_141500'" in out["stats"]
    assert "als_v2_20250116_141500" in out["verify"]


def test_registry_package_exports_the_documented_names() -> None:
    for name in ("ModelRegistry", "get_registry", "REQUIRED_MODEL_FILES", "MODEL_STATUS", "DEFAULT_REGISTRY_PATH",
                 "register_model", "select_best_model", "create_empty_registry", "validate_registry_schema",
                 "generate_version_id"):
        assert name in registry_package.__all__
        assert getattr(registry_package, name) is not None
