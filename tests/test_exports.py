"""Upgrade path: every name the original ``recsys.cf.registry`` exported is importable from ``registry``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import registry as registry_package

REPO = Path(__file__).resolve().parent.parent

# The original package's ``__all__`` (38 names), in its own order.
ORIGINAL_EXPORTS = (
    "ModelRegistry", "create_empty_registry", "validate_registry_schema", "get_registry", "register_model",
    "select_best_model", "DEFAULT_REGISTRY_PATH", "REQUIRED_MODEL_FILES", "MODEL_STATUS",
    "ModelLoader", "ModelState", "LoaderStats", "get_loader", "reset_loader", "load_model_from_registry",
    "BERTEmbeddingsRegistry", "get_bert_registry", "load_bert_embeddings", "DEFAULT_BERT_REGISTRY_PATH",
    "EMBEDDING_TYPES",
    "generate_version_id", "parse_version_id", "compare_versions", "get_git_commit", "get_git_commit_short",
    "get_git_branch", "is_git_clean", "compute_file_hash", "compute_directory_hash", "compute_data_version",
    "validate_model_path", "ensure_directory", "backup_registry", "restore_registry", "list_backups",
    "copy_model_artifacts", "cleanup_old_artifacts", "create_model_metadata", "load_model_metadata",
    "save_model_metadata",
)


@pytest.mark.parametrize("name", ORIGINAL_EXPORTS)
def test_every_original_top_level_name_is_exported(name: str) -> None:
    assert name in registry_package.__all__
    assert name in dir(registry_package)
    value = getattr(registry_package, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from registry import {name}", namespace)  # the import line teams rename
    assert namespace[name] is value


def test_top_level_utilities_are_the_registry_utils_helpers() -> None:
    import registry.utils as utils

    for name in utils.__all__:
        assert getattr(registry_package, name) is getattr(utils, name), name


def test_import_registry_stays_light() -> None:
    """The new names are lazy: a bare ``import registry`` loads neither pandas, numpy nor SQLAlchemy."""
    code = "import sys, registry; print(json.dumps(sorted(m for m in ('pandas', 'numpy', 'sqlalchemy') if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, env=env,
                            timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_listing_models_does_not_import_numpy_or_pandas(tmp_path: Path) -> None:
    """``cfreg list`` pays for what it uses: opening a registry and listing its records need neither."""
    code = ("import json, sys; from registry import ModelRegistry; "
            f"ModelRegistry({str(tmp_path / 'registry.json')!r}).list_model_records(); "
            "print(json.dumps(sorted(m for m in ('pandas', 'numpy') if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            check=True, cwd=tmp_path)
    assert json.loads(result.stdout) == []


def test_original_utility_calls_work_from_the_top_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The calls the original module test makes, through ``from registry import ...`` only."""
    monkeypatch.chdir(tmp_path)  # the registry's root is the working directory: its audit log goes to ./logs
    from registry import (
        ModelRegistry,
        backup_registry,
        compare_versions,
        create_model_metadata,
        list_backups,
        load_model_metadata,
        parse_version_id,
        restore_registry,
        save_model_metadata,
        validate_model_path,
    )

    assert parse_version_id("als_20250101_120000")["prefix"] == "als"
    assert compare_versions("als_20250101_120000", "als_20250102_120000") == -1
    metadata = create_model_metadata(num_users=3, num_items=2, factors=4, model_type="als", extra={"k": "v"})
    saved = save_model_metadata(tmp_path / "model", "als", metadata)
    assert Path(saved).exists() and load_model_metadata(tmp_path / "model", "als")["k"] == "v"
    assert validate_model_path(tmp_path / "missing", "als")[0] is False
    registry_json = tmp_path / "reg" / "registry.json"
    ModelRegistry(registry_json, auto_create=True)
    backup = backup_registry(registry_json)
    assert [Path(b["path"]) for b in list_backups(registry_json)] == [Path(backup)]
    assert restore_registry(backup, registry_json, create_current_backup=False)


def test_linking_embeddings_to_an_unknown_cf_model_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one intended difference from the original package."""
    monkeypatch.chdir(tmp_path)  # the registry's root is the working directory: its audit log goes to ./logs
    from factories import make_embeddings_dir
    from registry import BERTEmbeddingsRegistry, ModelNotFoundError

    make_embeddings_dir(tmp_path / "emb", num_items=5, dim=4)
    bert = BERTEmbeddingsRegistry(tmp_path / "reg" / "bert_registry.json", auto_create=True)
    version = bert.register_embeddings(str(tmp_path / "emb"), model_name="m", num_items=5, embedding_dim=4)
    with pytest.raises(ModelNotFoundError):
        bert.link_to_model(version, "bert_als_v1")
