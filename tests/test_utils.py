"""registry.utils: the doc's Utility Functions and Best Practices examples, hashing, artifacts, metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factories import make_model_dir
from registry import InvalidArgumentError, InvalidArtifactsError, ModelRegistry
from registry.utils import (
    cleanup_old_artifacts,
    compute_data_version,
    compute_directory_hash,
    compute_file_hash,
    copy_model_artifacts,
    create_model_metadata,
    ensure_directory,
    load_model_metadata,
    save_model_metadata,
    validate_model_path,
)
from registry_snapshot import snapshot

logger = logging.getLogger(__name__)


def write_data_files(root: Path) -> None:
    (root / "data" / "processed").mkdir(parents=True, exist_ok=True)
    (root / "data" / "processed" / "interactions.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 10)
    (root / "data" / "processed" / "user_item_mappings.json").write_text('{"u1": 0, "u2": 1}')


# --------------------------------------------------------------------------- the doc's examples, as written


def test_doc_utility_functions_run_as_written(workdir, model_dir):
    write_data_files(workdir)

    # Versioning
    from registry.utils import compare_versions, generate_version_id, parse_version_id

    version = generate_version_id(prefix='v')
    assert version.startswith("v_") and len(version) == len("v_20250116_141500")
    parsed = parse_version_id('v_20250116_141500')
    assert {k: parsed[k] for k in ("raw", "prefix", "date", "time", "datetime")} == {
        'raw': 'v_20250116_141500', 'prefix': 'v', 'date': '20250116', 'time': '141500',
        'datetime': '2025-01-16T14:15:00'}
    cmp = compare_versions('v_20250115_103000', 'v_20250116_141500')
    assert cmp == -1

    # Data Versioning
    data_version = compute_data_version([
        'data/processed/interactions.parquet',
        'data/processed/user_item_mappings.json'
    ])
    file_hash = compute_file_hash(
        'data/processed/interactions.parquet',
        algorithm='md5'
    )
    dir_hash = compute_directory_hash(
        'data/processed',
        extensions=['.parquet', '.json']
    )
    assert file_hash == hashlib.md5(Path("data/processed/interactions.parquet").read_bytes()).hexdigest()
    assert len(data_version) == len(dir_hash) == 32

    # Git Integration (the test folder is not a repository)
    from registry.utils import get_git_branch, get_git_commit, get_git_commit_short, is_git_clean

    commit = get_git_commit()
    commit_short = get_git_commit_short()
    branch = get_git_branch()
    clean = is_git_clean()
    assert (commit, commit_short, branch) == (None, None, None) and clean in (None, False)

    # Backup & Restore
    from registry.utils import backup_registry, list_backups, restore_registry

    registry = ModelRegistry()  # artifacts/cf/registry.json
    registry.register_model(model_dir("als/v1_20250115"), "als", {"factors": 8}, {"ndcg@10": 0.19}, {})
    backup_path = backup_registry('artifacts/cf/registry.json')
    assert backup_path.startswith('artifacts/cf/registry_backup_') and backup_path.endswith('.json')
    backups = list_backups('artifacts/cf/registry.json')
    assert [set(b) >= {'path', 'name', 'size_bytes', 'created_at'} for b in backups] == [True]
    shutil.copy(backup_path, 'artifacts/cf/registry_backup_20250116_120000.json')  # the doc's file name
    registry.register_model(model_dir("als/v2"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {})
    restore_registry(
        backup_path='artifacts/cf/registry_backup_20250116_120000.json',
        registry_path='artifacts/cf/registry.json',
        create_current_backup=True  # Backup current before restoring
    )
    assert len(registry.models) == 1 and len(list_backups('artifacts/cf/registry.json')) == 3

    # Artifact Management
    copy_model_artifacts(
        src_path='artifacts/cf/als/v1_20250115',
        dest_path='artifacts/cf/als/v1_backup',
        model_type='als'
    )
    deleted = cleanup_old_artifacts(
        artifacts_dir='artifacts/cf',
        keep_count=5,
        keep_current_best=True,
        dry_run=True  # Set False to actually delete
    )
    assert validate_model_path('artifacts/cf/als/v1_backup', 'als') == (True, [])
    assert deleted == []  # three folders, five kept

    # Metadata Utilities
    metadata = create_model_metadata(
        num_users=26000,
        num_items=2200,
        factors=128,
        model_type='als',
        data_version='abc123...',
        git_commit='def456...',
        score_range=(0.0, 1.5),
        extra={'custom_field': 'value'}
    )
    save_model_metadata('artifacts/cf/als/v1', 'als', metadata)
    metadata = load_model_metadata('artifacts/cf/als/v1', 'als')
    assert metadata["custom_field"] == "value" and metadata["score_range"] == {"min": 0.0, "max": 1.5}
    assert metadata["data_version_hash"] == "abc123..." and metadata["git_commit"] == "def456..."


def test_doc_best_practices_run_as_written(workdir, model_dir, embeddings_dir):
    from registry import get_bert_registry, get_loader, get_registry, reset_loader
    from registry.utils import backup_registry

    write_data_files(workdir)
    registry = get_registry()
    old = registry.register_model(model_dir("als/v1"), "als", {"factors": 8}, {"ndcg@10": 0.18}, {},
                                  baseline_comparison={"improvement_ndcg@10": 0.02})
    new = registry.register_model(model_dir("als/v2", seed=2), "als", {"factors": 8}, {"ndcg@10": 0.20}, {},
                                  baseline_comparison={"improvement_ndcg@10": 0.09})
    try:
        # 1. Always use singleton pattern
        loader = get_loader()  # Not ModelLoader()
        assert loader is get_loader()

        # 2. Auto-select with min_improvement
        registry.select_best_model(metric='ndcg@10', min_improvement=0.05)
        assert registry.get_current_best()["model_id"] == new

        # 3. Backup before major changes
        backup_registry('artifacts/cf/registry.json')

        # 4. Track data_version
        data_version = compute_data_version(['data/processed/interactions.parquet'])
        assert len(data_version) == 32

        # 5. Use archive instead of delete
        model_id = old
        registry.archive_model(model_id)  # Not delete_model
        assert registry.get_model(old)["status"] == "archived"

        # 6. Monitor cache hit rate
        if loader.get_stats()['cache_hit_rate'] < 0.8:
            loader.preload_models([new])

        # 7. Hot-reload in production
        if loader.reload_model():
            logger.info("Model reloaded!")
        assert loader.get_current_model().model_id == new

        # 8. Link BERT embeddings to CF models
        bert_registry = get_bert_registry()
        bert_registry.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16, version="bert_v1_x")
        bert_registry.link_to_model(
            embedding_version='bert_v1_x',
            model_id=new
        )
        assert bert_registry.list_embeddings()[0]["linked_models"] == [new]
    finally:
        reset_loader()


# --------------------------------------------------------------------------- hashing


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_compute_file_hash_matches_hashlib(algorithm, tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(100_000))

    assert compute_file_hash(path, algorithm) == hashlib.new(algorithm, path.read_bytes()).hexdigest()


def test_compute_file_hash_errors(tmp_path):
    with pytest.raises(ValueError, match="crc32"):
        compute_file_hash(__file__, "crc32")
    with pytest.raises(FileNotFoundError):
        compute_file_hash(tmp_path / "missing.bin")


def make_tree(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "part.parquet").write_bytes(b"one")
    (root / "b" / "part.parquet").write_bytes(b"two")
    (root / "notes.txt").write_text("ignored by the filter")
    return root


def test_directory_hash_depends_on_relative_paths_and_content_not_location(tmp_path):
    first = make_tree(tmp_path / "x" / "data")
    second = make_tree(tmp_path / "y" / "elsewhere")
    reference = compute_directory_hash(first)

    assert compute_directory_hash(second) == reference
    (second / "a" / "part.parquet").rename(second / "a" / "renamed.parquet")
    assert compute_directory_hash(second) != reference
    # Swapping two same-named files between folders changes the hash (the original hashed names only).
    (first / "a" / "part.parquet").write_bytes(b"two")
    (first / "b" / "part.parquet").write_bytes(b"one")
    assert compute_directory_hash(first) != reference


def test_directory_hash_extension_filter(tmp_path):
    root = make_tree(tmp_path / "data")
    filtered = compute_directory_hash(root, extensions=[".parquet"])

    assert compute_directory_hash(root, extensions=["PARQUET"]) == filtered
    (root / "notes.txt").write_text("changed")
    assert compute_directory_hash(root, extensions=[".parquet"]) == filtered
    assert compute_directory_hash(root) != compute_directory_hash(root, extensions=[".parquet"])
    with pytest.raises(ValueError, match="list"):
        compute_directory_hash(root, extensions=".parquet")


def test_directory_hash_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        compute_directory_hash(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        compute_directory_hash(tmp_path / "file")


def test_data_version_is_about_content_not_paths_or_order(tmp_path):
    write_data_files(tmp_path / "one")
    write_data_files(tmp_path / "two")
    files = ["interactions.parquet", "user_item_mappings.json"]
    version = compute_data_version([tmp_path / "one" / "data" / "processed" / name for name in files])

    assert compute_data_version([tmp_path / "two" / "data" / "processed" / name for name in reversed(files)]) == version
    assert compute_data_version(str(tmp_path / "one" / "data" / "processed")) == compute_data_version(
        [tmp_path / "two" / "data" / "processed"])
    (tmp_path / "two" / "data" / "processed" / "user_item_mappings.json").write_text('{"u1": 1}')
    assert compute_data_version([tmp_path / "two" / "data" / "processed" / name for name in files]) != version


def test_data_version_refuses_missing_files_and_empty_lists(tmp_path):
    write_data_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="typo.parquet"):
        compute_data_version([tmp_path / "data" / "processed" / "interactions.parquet", tmp_path / "typo.parquet"])
    with pytest.raises(ValueError, match="at least one"):
        compute_data_version([])


# --------------------------------------------------------------------------- artifact folders


def test_copy_model_artifacts_copies_required_files_and_id_maps(tmp_path):
    source = make_model_dir(tmp_path / "src", "bpr", id_maps=True)

    assert copy_model_artifacts(source, tmp_path / "dest" / "copy", "bpr") is True

    copied = sorted(p.name for p in (tmp_path / "dest" / "copy").iterdir())
    assert copied == sorted(p.name for p in source.iterdir())
    for name in copied:
        assert (tmp_path / "dest" / "copy" / name).read_bytes() == (source / name).read_bytes()
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["copy"]  # no staging folder left


def test_copy_model_artifacts_refuses_missing_files_and_busy_destinations(tmp_path):
    source = make_model_dir(tmp_path / "src", "als")
    (source / "als_V.npy").unlink()
    with pytest.raises(InvalidArtifactsError, match="als_V.npy"):
        copy_model_artifacts(source, tmp_path / "dest", "als")
    assert not (tmp_path / "dest").exists()

    good = make_model_dir(tmp_path / "good", "als")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="not empty"):
        copy_model_artifacts(good, tmp_path / "busy", "als")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    with pytest.raises(InvalidArgumentError, match="model_type"):
        copy_model_artifacts(good, tmp_path / "x", "svd")
    (tmp_path / "empty").mkdir()
    assert copy_model_artifacts(good, tmp_path / "empty", "als") is True  # an empty folder is replaced


def test_copy_model_artifacts_is_all_or_nothing(tmp_path, monkeypatch):
    source = make_model_dir(tmp_path / "src", "als")
    real_copy = shutil.copy2
    calls = []

    def failing_copy(src: Any, dst: Any, **kwargs: Any) -> Any:
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copy2", failing_copy)
    with pytest.raises(OSError, match="No space"):
        copy_model_artifacts(source, tmp_path / "dest" / "copy", "als")

    assert list((tmp_path / "dest").iterdir()) == []


def test_validate_model_path_and_ensure_directory(tmp_path):
    folder = make_model_dir(tmp_path / "m", "als")
    assert validate_model_path(folder, "als") == (True, [])
    (folder / "als_params.json").unlink()
    assert validate_model_path(folder, "als") == (False, ["als_params.json"])
    assert validate_model_path(tmp_path / "nowhere", "als") == (False, [str(tmp_path / "nowhere")])
    assert validate_model_path(folder, "svd") == (False, ["Unknown model type: svd"])
    assert validate_model_path(folder, "anything", required_files=["als_U.npy"]) == (True, [])

    created = ensure_directory(tmp_path / "a" / "b" / "c")
    assert created == tmp_path / "a" / "b" / "c" and created.is_dir()
    assert ensure_directory(created) == created


# --------------------------------------------------------------------------- cleanup


def age(folder: Path, days: int) -> None:
    stamp = 1_600_000_000 - days * 86400
    os.utime(folder, (stamp, stamp))


def test_cleanup_without_a_registry_keeps_the_newest_folders(tmp_path):
    root = tmp_path / "artifacts"
    for index in range(7):
        age(make_model_dir(root / "als" / f"v{index}", "als"), days=10 - index)
    age(make_model_dir(root / "bpr" / "only", "bpr"), days=100)
    (root / "other").mkdir()  # not a model type: never touched

    planned = cleanup_old_artifacts(root, keep_count=5)

    assert planned == [str(root / "als" / "v1"), str(root / "als" / "v0")]
    assert (root / "als" / "v0").exists()  # dry run by default
    assert cleanup_old_artifacts(root, keep_count=5, dry_run=False) == planned
    assert sorted(p.name for p in (root / "als").iterdir()) == ["v2", "v3", "v4", "v5", "v6"]
    assert (root / "bpr" / "only").exists() and (root / "other").exists()


def test_cleanup_consults_the_registry(tmp_path, database_url, registry_path, embeddings_dir):
    from registry import BERTEmbeddingsRegistry

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    root = registry_path.parent

    def add(name: str, folder: str) -> str:
        make_model_dir(root / "als" / folder, "als")
        return registry.register_model(f"artifacts/cf/als/{folder}", "als", {"factors": 8}, {"ndcg@10": 0.1}, {},
                                       version=name)

    v1, v2, v3, v3b, v4, v5, v6 = (add(name, folder) for name, folder in (
        ("v1", "v1"), ("v2", "v2"), ("v3", "v3"), ("v3b", "v3"), ("v4", "v4"), ("v5", "v5"), ("v6", "v6")))
    registry.promote_model(v1)  # current best: the oldest
    registry.start_ab_test(v6, v2, 0.1)
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=database_url, root=tmp_path)
    bert.register_embeddings(embeddings_dir("bert/e1"), "vinai/phobert-base", 25, 16, version="e1")
    bert.link_to_model("e1", v3b)  # v3 is shared by v3 and v3b
    stray = make_model_dir(root / "als" / "stray", "als")
    age(stray, days=1000)
    before = snapshot(registry, tmp_path / "artifacts")

    planned = cleanup_old_artifacts(root, keep_count=2, keep_current_best=False, database_url=database_url)

    assert planned == [str(root / "als" / "v4"), str(root / "als" / "stray")]
    assert snapshot(registry, tmp_path / "artifacts") == before  # dry run changes nothing
    deleted = cleanup_old_artifacts(root, keep_count=2, dry_run=False, database_url=database_url)
    assert deleted == planned
    assert sorted(p.name for p in (root / "als").iterdir()) == ["v1", "v2", "v3", "v5", "v6"]
    assert registry.get_model(v4)["status"] == "archived"
    assert {registry.get_model(m)["status"] for m in (v1, v2, v3, v3b, v5, v6)} == {"active"}
    from registry.audit import query_events

    events = registry.context.read(lambda s: query_events(s, action="ARCHIVE"))
    assert [(e["target"], e["summary"]) for e in events] == [(v4, "reason=cleanup")]
    assert json.loads(registry_path.read_text())["models"][v4]["status"] == "archived"


def test_cleanup_keeps_a_folder_two_registrations_share_as_delete_model_does(tmp_path, database_url, registry_path):
    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    root = registry_path.parent
    for folder in ("old", "new"):
        make_model_dir(root / "als" / folder, "als")
    registry.register_model("artifacts/cf/als/old", "als", {"factors": 8}, {"ndcg@10": 0.1}, {}, version="a")
    registry.register_model("artifacts/cf/als/old", "als", {"factors": 8}, {"ndcg@10": 0.1}, {}, version="b")
    registry.register_model("artifacts/cf/als/new", "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="c")
    registry.promote_model("als_c")
    before = snapshot(registry, tmp_path / "artifacts")

    # The same rule as delete_model(delete_files=True): a folder another registration still uses stays.
    assert cleanup_old_artifacts(root, keep_count=1, dry_run=False, database_url=database_url) == []

    assert (root / "als" / "old").is_dir() and snapshot(registry, tmp_path / "artifacts") == before


def test_both_cleanups_protect_the_same_models(tmp_path, database_url, registry_path, embeddings_dir):
    from registry import BERTEmbeddingsRegistry
    from registry.maintenance import plan_cleanup

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    root = registry_path.parent
    ids = []
    for index in range(6):
        make_model_dir(root / "als" / f"v{index}", "als", seed=index)
        ids.append(registry.register_model(f"artifacts/cf/als/v{index}", "als", {"factors": 8}, {"ndcg@10": 0.1}, {},
                                           version=f"v{index}"))
    registry.promote_model(ids[0])
    registry.start_ab_test(ids[1], ids[5], 0.1)
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=database_url, root=tmp_path)
    bert.register_embeddings(embeddings_dir("bert/e1"), "vinai/phobert-base", 25, 16, version="e1")
    bert.link_to_model("e1", ids[2])

    spared_by_models = {i.model_id for i in plan_cleanup(registry, 1).items if i.action == "skip"}
    planned_folders = cleanup_old_artifacts(root, keep_count=1, database_url=database_url)
    spared_by_folders = {f"als_v{index}" for index in range(5) if str(root / "als" / f"v{index}") not in planned_folders}

    assert spared_by_models == spared_by_folders == {ids[0], ids[1], ids[2]}


def test_cleanup_with_a_json_only_legacy_registry_keeps_its_current_best(workdir):
    root = workdir / "artifacts" / "cf"
    for index in range(3):
        age(make_model_dir(root / "als" / f"v{index}", "als"), days=10 - index)
    document = {"current_best": "als_v0", "metadata": {}, "models": {
        "als_v0": {"model_type": "als", "version": "v0", "path": "artifacts/cf/als/v0", "created_at": "2020-01-01T00:00:00"}}}
    (root / "registry.json").write_text(json.dumps(document))

    deleted = cleanup_old_artifacts("artifacts/cf", keep_count=1, dry_run=False)

    assert deleted == ["artifacts/cf/als/v1"]
    assert (root / "als" / "v0").exists() and not (root / "registry.db").exists()


def _json_only_registry(project: Path, current_path: str = "artifacts/cf/als/v0") -> Path:
    """A legacy registry.json (no registry.db) with relative paths and als_v0 as current best."""
    root = project / "artifacts" / "cf"
    for index in range(3):
        age(make_model_dir(root / "als" / f"v{index}", "als"), days=10 - index)
    models = {f"als_v{i}": {"model_type": "als", "version": f"v{i}", "path": f"artifacts/cf/als/v{i}",
                            "created_at": f"2020-01-0{i + 1}T00:00:00"} for i in range(3)}
    models["als_v0"]["path"] = current_path
    document = {"current_best": "als_v0", "metadata": {}, "models": models}
    (root / "registry.json").write_text(json.dumps(document))
    return root


def test_cleanup_of_a_json_only_registry_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """Run from "/": relative paths still resolve against the registry's project folder, the current best stays."""
    root = _json_only_registry(tmp_path / "project")
    monkeypatch.chdir("/")

    assert cleanup_old_artifacts(root, keep_count=0) == [str(root / "als" / "v2"), str(root / "als" / "v1")]
    deleted = cleanup_old_artifacts(root, keep_count=0, dry_run=False)

    assert deleted == [str(root / "als" / "v2"), str(root / "als" / "v1")]
    assert (root / "als" / "v0" / "als_U.npy").exists()
    assert not (root / "registry.db").exists()


def test_cleanup_refuses_everything_when_the_protected_folder_cannot_be_found(tmp_path, monkeypatch):
    root = _json_only_registry(tmp_path / "project", current_path="elsewhere/als/v0")
    monkeypatch.chdir("/")
    for dry_run in (True, False):
        with pytest.raises(InvalidArtifactsError, match="als_v0 \\(current best\\).*does not exist"):
            cleanup_old_artifacts(root, keep_count=0, dry_run=dry_run)
    assert sorted(p.name for p in (root / "als").iterdir()) == ["v0", "v1", "v2"]


def test_cleanup_with_a_registry_whose_root_is_wrong_deletes_nothing(tmp_path, database_url, registry_path, monkeypatch):
    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    root = registry_path.parent
    for index in range(3):
        make_model_dir(root / "als" / f"v{index}", "als", seed=index)
        registry.register_model(f"artifacts/cf/als/v{index}", "als", {}, {"ndcg@10": 0.1 * index}, {}, version=f"v{index}")
    registry.promote_model("als_v0")
    monkeypatch.setenv("CFREG_ROOT", str(tmp_path / "moved"))  # this process resolves paths elsewhere
    from registry import db

    db.forget_databases()
    with pytest.raises(InvalidArtifactsError, match="als_v0 \\(current best\\)"):
        cleanup_old_artifacts(root, keep_count=0, dry_run=False, database_url=database_url)
    assert sorted(p.name for p in (root / "als").iterdir()) == ["v0", "v1", "v2"]
    assert {registry.get_model(f"als_v{i}")["status"] for i in range(3)} == {"active"}


def test_cleanup_never_follows_symlinks_out_of_the_artifacts_folder(tmp_path):
    root = tmp_path / "artifacts"
    outside = make_model_dir(tmp_path / "precious", "als")
    (root / "als").mkdir(parents=True)
    (root / "als" / "link").symlink_to(outside, target_is_directory=True)

    assert cleanup_old_artifacts(root, keep_count=0, dry_run=False) == []
    assert (outside / "als_U.npy").exists()


@pytest.mark.parametrize("keep_count", [-1, 2.5, True, "5"])
def test_cleanup_refuses_bad_keep_count(keep_count, tmp_path):
    with pytest.raises(InvalidArgumentError, match="keep_count"):
        cleanup_old_artifacts(tmp_path, keep_count=keep_count)


# --------------------------------------------------------------------------- metadata


def test_create_model_metadata_fields(tmp_path):
    metadata = create_model_metadata(np.int64(40), 25, 8, "bpr", score_range=(np.float32(-1.5), 2))

    assert metadata["num_users"] == 40 and type(metadata["num_users"]) is int
    assert metadata["data_version_hash"] == "unknown"
    assert metadata["score_range"] == {"min": -1.5, "max": 2}
    assert "git_commit" in metadata and metadata["training_date"][:2] == "20"
    with pytest.raises(InvalidArgumentError, match="num_items"):
        create_model_metadata(40, -1, 8, "als")
    with pytest.raises(InvalidArgumentError, match="score_range"):
        create_model_metadata(40, 25, 8, "als", score_range=(0.0,))
    with pytest.raises(InvalidArgumentError, match="non-finite"):
        create_model_metadata(40, 25, 8, "als", extra={"loss": float("nan")})


def test_save_model_metadata_is_atomic(tmp_path, monkeypatch):
    path = save_model_metadata(tmp_path / "m", "als", {"num_users": 1})
    before = Path(path).read_bytes()

    def broken(*args: Any) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        save_model_metadata(tmp_path / "m", "als", {"num_users": 2})
    monkeypatch.undo()

    assert Path(path).read_bytes() == before
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["als_metadata.json"]
    with pytest.raises(InvalidArgumentError):
        save_model_metadata(tmp_path / "m", "als", {"loss": float("inf")})
    assert Path(path).read_bytes() == before


def test_load_model_metadata_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model_metadata(tmp_path, "als")
    (tmp_path / "als_metadata.json").write_text("[1, 2]")
    with pytest.raises(InvalidArtifactsError, match="JSON object"):
        load_model_metadata(tmp_path, "als")
    (tmp_path / "als_metadata.json").write_text('{"loss": NaN}')
    with pytest.raises(InvalidArtifactsError):
        load_model_metadata(tmp_path, "als")
