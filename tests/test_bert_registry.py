"""BERTEmbeddingsRegistry: registration, current version, links to CF models, deletion, loading.

Every test runs on SQLite and, with CFREG_TEST_POSTGRES_URL set, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from factories import make_embeddings_dir, make_model_dir
from registry import (
    BERTEmbeddingsRegistry,
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelExistsError,
    ModelInUseError,
    ModelNotFoundError,
    ModelRegistry,
    NoModelLoadedError,
    RegistryNotFoundError,
    audit,
    embeddings_files,
    embeddings_ops,
    get_bert_registry,
    load_bert_embeddings,
)
from registry import artifacts as artifacts_module
from registry import bert_registry as bert_module
from registry.models import AuditEvent, BertEmbedding, EmbeddingLink, Settings

VERSION_PATTERN = re.compile(r"bert_\d{8}_\d{6}(_\d+)?")


@pytest.fixture
def bert(registry_path: Path, database_url: str, tmp_path: Path) -> BERTEmbeddingsRegistry:
    """A BERT registry beside the ``registry`` fixture's registry.json (same database)."""
    return BERTEmbeddingsRegistry(registry_path.with_name("bert_registry.json"), database_url=database_url, root=tmp_path)


def state(bert: BERTEmbeddingsRegistry) -> tuple[int, int, int, int]:
    """(generation, embeddings rows, link rows, audit rows): any stored change moves one of them."""
    def work(session):  # type: ignore[no-untyped-def]
        return (
            session.get(Settings, 1).generation,
            session.scalar(select(func.count()).select_from(BertEmbedding)),
            session.scalar(select(func.count()).select_from(EmbeddingLink)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )

    return bert.context.read(work)


def actions(bert: BERTEmbeddingsRegistry, target: str | None = None) -> list[str]:
    return [event["action"] for event in bert.context.read(lambda s: audit.query_events(s, target=target))]


def bert_json(bert: BERTEmbeddingsRegistry) -> dict:
    return json.loads(bert.registry_path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- the doc's examples


def test_doc_examples_run_as_written(workdir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The doc's code takes no database argument: point the environment at this backend.
    monkeypatch.setenv("CFREG_DATABASE_URL", database_url)
    rng = np.random.default_rng(7)
    saved = rng.standard_normal((2244, 768)).astype(np.float32)
    Path("data/processed/content_based_embeddings").mkdir(parents=True)
    np.save("data/processed/content_based_embeddings/product_embeddings.npy", saved)
    make_model_dir("artifacts/cf/als/v2_20250116_141500", "als")

    from registry import BERTEmbeddingsRegistry, get_bert_registry

    # Option 1: Direct
    bert_registry = BERTEmbeddingsRegistry(
        registry_path='artifacts/cf/bert_registry.json',
        auto_create=True
    )
    assert json.loads(Path("artifacts/cf/bert_registry.json").read_text())["embeddings"] == {}

    # Option 2: Singleton
    bert_registry = get_bert_registry()
    assert get_bert_registry() is bert_registry

    version = bert_registry.register_embeddings(
        embedding_path='data/processed/content_based_embeddings',
        model_name='vinai/phobert-base',
        num_items=2244,
        embedding_dim=768,
        generation_config={
            'batch_size': 32,
            'max_length': 256
        },
        text_fields_used=['product_name', 'description', 'ingredients'],
        data_version='abc123...',
        git_commit='def456...'
    )
    assert VERSION_PATTERN.fullmatch(version), version

    best = bert_registry.get_current_best()
    assert best["version"] == version
    info = best["info"]
    assert info["version"] == version
    assert info["path"] == "data/processed/content_based_embeddings"
    assert info["model_name"] == "vinai/phobert-base"
    assert (info["num_items"], info["embedding_dim"]) == (2244, 768)
    assert info["generation_config"] == {"batch_size": 32, "max_length": 256}
    assert info["text_fields_used"] == ["product_name", "description", "ingredients"]
    assert (info["data_version"], info["git_commit"]) == ("abc123...", "def456...")
    assert info["linked_models"] == []

    # The link example names an explicit version and a CF model: register both.
    model_id = ModelRegistry().register_model(
        artifacts_path="artifacts/cf/als/v2_20250116_141500", model_type="als",
        hyperparameters={"factors": 8}, metrics={"ndcg@10": 0.195}, training_info={}, version="v2_20250116_141500",
    )
    assert model_id == "als_v2_20250116_141500"
    assert bert_registry.register_embeddings(
        "data/processed/content_based_embeddings", "vinai/phobert-base", 2244, 768, version="bert_20250115_103000"
    ) == "bert_20250115_103000"

    bert_registry.link_to_model(
        embedding_version='bert_20250115_103000',
        model_id='als_v2_20250116_141500'
    )

    embeddings_list = bert_registry.list_embeddings(include_linked_models=True)
    by_version = {item["version"]: item for item in embeddings_list}
    assert by_version["bert_20250115_103000"]["linked_models"] == ["als_v2_20250116_141500"]
    assert by_version[version]["is_current"] is True
    assert by_version["bert_20250115_103000"]["is_current"] is False
    assert set(embeddings_list[0]) == {
        "version", "model_name", "num_items", "embedding_dim", "created_at", "is_current", "linked_models", "tags"
    }

    from registry import load_bert_embeddings

    # Load current best
    embeddings, metadata = load_bert_embeddings()
    assert metadata["version"] == version
    np.testing.assert_array_equal(embeddings, saved)

    # Load specific version
    embeddings, metadata = load_bert_embeddings(version='bert_20250115_103000')
    assert metadata["version"] == "bert_20250115_103000"
    assert embeddings.shape == (2244, 768)
    assert "torch" not in sys.modules, ".npy loading must not import torch"

    with pytest.raises(ModelInUseError, match="linked to CF models"):
        bert_registry.delete_embeddings(version="bert_20250115_103000", delete_files=False)
    assert bert_registry.unlink_model("bert_20250115_103000", "als_v2_20250116_141500") is True

    success = bert_registry.delete_embeddings(
        version='bert_20250115_103000',
        delete_files=False
    )
    assert success is True
    assert bert_registry.get_embeddings("bert_20250115_103000") is None
    assert Path("data/processed/content_based_embeddings/product_embeddings.npy").is_file()


# ---------------------------------------------------------------------- registration


def test_register_records_file_checksum_and_defaults(bert: BERTEmbeddingsRegistry, embeddings_dir, tmp_path: Path) -> None:
    path = embeddings_dir("bert/v1", num_items=25, dim=16)
    version = bert.register_embeddings(path, "vinai/phobert-base", 25, 16)
    info = bert.get_embeddings(version)
    assert info["text_fields_used"] == ["product_name", "description"]
    assert info["data_version"] == "unknown"
    assert info["generation_config"] == {}
    recorded = bert.get_embedding_file(version)
    file_path = tmp_path / path / "product_embeddings.npy"
    assert recorded["file_name"] == "product_embeddings.npy"
    assert recorded["size_bytes"] == file_path.stat().st_size
    assert recorded["sha256"] == artifacts_module.sha256_file(file_path)


def test_item_embeddings_file_is_accepted_and_product_file_preferred(bert: BERTEmbeddingsRegistry, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "cf" / "bert" / "items"
    make_embeddings_dir(folder, num_items=10, dim=4, file_name="item_embeddings.npy")
    version = bert.register_embeddings(folder, "m", 10, 4)
    assert bert.get_embedding_file(version)["file_name"] == "item_embeddings.npy"
    make_embeddings_dir(folder, num_items=12, dim=4, file_name="product_embeddings.npy")
    ok, problems = bert.validate_embedding_files(folder)
    assert (ok, problems) == (True, [])
    second = bert.register_embeddings(folder, "m", 12, 4)
    assert bert.get_embedding_file(second)["file_name"] == "product_embeddings.npy"


def test_git_commit_is_detected_under_root(bert: BERTEmbeddingsRegistry, embeddings_dir, tmp_path: Path) -> None:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    assert bert.get_embeddings(version)["git_commit"] == head


def test_automatic_versions_in_the_same_second_are_made_unique(
    bert: BERTEmbeddingsRegistry, embeddings_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings_ops, "generate_version_id", lambda prefix: f"{prefix}_20250115_103000")
    path = embeddings_dir("bert/v1")
    versions = [bert.register_embeddings(path, "m", 25, 16) for _ in range(3)]
    assert versions == ["bert_20250115_103000", "bert_20250115_103000_2", "bert_20250115_103000_3"]


def test_reregistering_identical_version_writes_nothing(bert: BERTEmbeddingsRegistry, embeddings_dir) -> None:
    path = embeddings_dir("bert/v1")
    assert bert.register_embeddings(path, "m", 25, 16, version="bert_a") == "bert_a"
    before = state(bert)
    assert bert.register_embeddings(path, "m", 25, 16, version="bert_a") == "bert_a"
    assert state(bert) == before


def test_reregistering_version_with_other_content_raises_and_keeps_links(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir, tmp_path: Path
) -> None:
    path = embeddings_dir("bert/v1", seed=1)
    bert.register_embeddings(path, "m", 25, 16, version="bert_a")
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    bert.link_to_model("bert_a", model_id)
    info_before, before = bert.get_embeddings("bert_a"), state(bert)

    other = embeddings_dir("bert/v2", seed=2)
    with pytest.raises(ModelExistsError, match="bert_a.*already exists"):
        bert.register_embeddings(other, "m", 25, 16, version="bert_a")
    # Same folder, new content (same shape): still a different registration.
    make_embeddings_dir(tmp_path / path, seed=3)
    with pytest.raises(ModelExistsError):
        bert.register_embeddings(path, "m", 25, 16, version="bert_a")

    assert bert.get_embeddings("bert_a") == info_before
    assert bert.get_embeddings("bert_a")["linked_models"] == [model_id]
    assert state(bert) == before


# ---------------------------------------------------------------------- bad input leaves everything unchanged


def _write_npy(folder: Path, array: np.ndarray, name: str = "product_embeddings.npy", **kwargs) -> None:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, array, **kwargs)


BAD_FILES = {
    "shape_rows": (lambda f: _write_npy(f, np.zeros((24, 16), np.float32)), InvalidArtifactsError, r"shape \(24, 16\) does not match"),
    "shape_dim": (lambda f: _write_npy(f, np.zeros((25, 8), np.float32)), InvalidArtifactsError, r"\(25, 16\)"),
    "three_d": (lambda f: _write_npy(f, np.zeros((25, 16, 1), np.float32)), InvalidArtifactsError, "must hold a 2-D array"),
    "one_d": (lambda f: _write_npy(f, np.zeros(25, np.float32)), InvalidArtifactsError, "must hold a 2-D array"),
    "strings": (lambda f: _write_npy(f, np.array([["a"] * 16] * 25)), InvalidArtifactsError, "refused"),
    "missing_folder": (lambda f: None, InvalidArtifactsError, "does not exist"),
    "empty_folder": (lambda f: f.mkdir(parents=True), InvalidArtifactsError, "expected one of.*product_embeddings.npy"),
    "npz_only": (lambda f: (f.mkdir(parents=True), np.savez(f / "product_embeddings.npz", a=np.zeros((25, 16))))[0],
                 InvalidArtifactsError, "no embeddings file"),
    "truncated": (lambda f: (_write_npy(f, np.zeros((25, 16), np.float32)),
                             (f / "product_embeddings.npy").write_bytes((f / "product_embeddings.npy").read_bytes()[:-10]))[0],
                  InvalidArtifactsError, "truncated"),
    "random_bytes": (lambda f: (f.mkdir(parents=True), (f / "product_embeddings.npy").write_bytes(os.urandom(300)))[0],
                     InvalidArtifactsError, "not a readable .npy"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_clear_errors_and_store_nothing(bert: BERTEmbeddingsRegistry, tmp_path: Path, case: str) -> None:
    bert.register_embeddings(make_embeddings_dir(tmp_path / "artifacts/cf/bert/good"), "m", 25, 16)
    build, error, message = BAD_FILES[case]
    folder = tmp_path / "artifacts" / "cf" / "bert" / case
    build(folder)
    before, document = state(bert), bert.registry_path.read_text()
    with pytest.raises(error, match=message):
        bert.register_embeddings(folder, "m", 25, 16, version="bert_bad")
    assert state(bert) == before
    assert bert.registry_path.read_text() == document
    assert bert.get_embeddings("bert_bad") is None
    if case not in ("shape_rows", "shape_dim"):
        ok, problems = bert.validate_embedding_files(folder)
        assert ok is False and problems


BAD_ARGUMENTS = {
    "num_items_zero": ({"num_items": 0}, "num_items must be a positive integer"),
    "num_items_bool": ({"num_items": True}, "num_items must be a positive integer"),
    "dim_float": ({"embedding_dim": 16.0}, "embedding_dim must be a positive integer"),
    "model_name_empty": ({"model_name": " "}, "model_name must be a non-empty string"),
    "model_name_pipe": ({"model_name": "a|b"}, "model_name"),
    "text_fields_string": ({"text_fields_used": "product_name"}, "text_fields_used must be a list"),
    "text_fields_number": ({"text_fields_used": ["name", 3]}, "non-empty strings"),
    "config_nan": ({"generation_config": {"temperature": float("nan")}}, "non-finite"),
    "config_not_dict": ({"generation_config": [1]}, "generation_config must be a dict"),
    "version_bad": ({"version": "bad version"}, "invalid version"),
    "path_none": ({"embedding_path": None}, "embedding_path must be a path"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_give_clear_errors_and_store_nothing(bert: BERTEmbeddingsRegistry, embeddings_dir, case: str) -> None:
    arguments = {"embedding_path": embeddings_dir("bert/v1"), "model_name": "m", "num_items": 25, "embedding_dim": 16}
    overrides, message = BAD_ARGUMENTS[case]
    arguments.update(overrides)
    before = state(bert)
    with pytest.raises(InvalidArgumentError, match=message):
        bert.register_embeddings(**arguments)
    assert state(bert) == before


def test_numpy_integer_sizes_are_accepted(bert: BERTEmbeddingsRegistry, embeddings_dir) -> None:
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", np.int64(25), np.int32(16))
    assert (bert.get_embeddings(version)["num_items"], bert.get_embeddings(version)["embedding_dim"]) == (25, 16)


def test_pickled_object_npy_is_refused_and_never_unpickled(bert: BERTEmbeddingsRegistry, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.mkdir, (str(sentinel),))

    folder = tmp_path / "artifacts" / "cf" / "bert" / "evil"
    _write_npy(folder, np.array([[Payload()] * 16] * 25, dtype=object), allow_pickle=True)
    before = state(bert)
    with pytest.raises(InvalidArtifactsError, match="dtype object refused"):
        bert.register_embeddings(folder, "m", 25, 16)
    ok, problems = bert.validate_embedding_files(folder)
    assert not ok and "never pickled objects" in problems[0]
    assert state(bert) == before
    assert not sentinel.exists()


def test_validate_embedding_files(bert: BERTEmbeddingsRegistry, embeddings_dir, tmp_path: Path) -> None:
    assert bert.validate_embedding_files(embeddings_dir("bert/v1")) == (True, [])
    ok, problems = bert.validate_embedding_files("artifacts/cf/bert/nowhere")
    assert not ok and "does not exist" in problems[0] and "nowhere" in problems[0]
    file_path = tmp_path / "artifacts/cf/bert/v1/product_embeddings.npy"
    ok, problems = bert.validate_embedding_files(file_path)
    assert not ok and "not a directory" in problems[0]


@pytest.mark.skipif(bert_module.torch_available(), reason="checks the message shown when torch is missing")
def test_pt_file_without_torch_names_the_fix(bert: BERTEmbeddingsRegistry, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "cf" / "bert" / "pt"
    folder.mkdir(parents=True)
    (folder / "product_embeddings.pt").write_bytes(b"not really a tensor")
    ok, problems = bert.validate_embedding_files(folder)
    assert not ok and "torch is not installed" in problems[0]


@pytest.mark.slow  # imports torch (seconds); .ci/run installs the torch extra for the slow run
def test_pt_file_is_loaded_with_weights_only(bert: BERTEmbeddingsRegistry, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    folder = tmp_path / "artifacts" / "cf" / "bert" / "pt"
    folder.mkdir(parents=True)
    tensor = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    torch.save(tensor, folder / "product_embeddings.pt")
    version = bert.register_embeddings(folder, "m", 10, 4)
    array, info = bert.load_embeddings(version)
    np.testing.assert_array_equal(array, tensor.numpy())
    assert info["version"] == version
    torch.save(tensor + 1, folder / "product_embeddings.pt")  # changed since registration
    with pytest.raises(ChecksumMismatchError, match="product_embeddings.pt"):
        bert.load_embeddings(version)


class _CreatesSentinel:
    """Unpickling this object opens (creates) a file: proof that pickled code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


@pytest.mark.slow  # imports torch (seconds)
def test_pt_file_with_a_pickle_payload_is_refused_and_runs_nothing(
    bert: BERTEmbeddingsRegistry, tmp_path: Path, database_url: str
) -> None:
    torch = pytest.importorskip("torch")
    import workers

    sentinel = tmp_path / "pwned"
    payload = {"embeddings": torch.zeros(10, 4), "hook": _CreatesSentinel(sentinel)}
    # Registration: the payload sits in a folder of its own.
    hostile = tmp_path / "artifacts" / "cf" / "bert" / "hostile"
    hostile.mkdir(parents=True)
    torch.save(payload, hostile / "product_embeddings.pt")
    before = workers.table_dump(database_url)
    with pytest.raises(InvalidArtifactsError, match="product_embeddings.pt: not a loadable tensor file"):
        bert.register_embeddings(hostile, "m", 10, 4)
    ok, problems = bert.validate_embedding_files(hostile)
    assert not ok and "not a loadable tensor file" in problems[0]
    assert workers.table_dump(database_url) == before
    # Load: a registered .pt replaced by the payload, read as a version without a recorded
    # checksum (a legacy import) is read, and through load_embeddings (checksum first).
    good = tmp_path / "artifacts" / "cf" / "bert" / "good"
    good.mkdir(parents=True)
    torch.save(torch.zeros(10, 4), good / "product_embeddings.pt")
    version = bert.register_embeddings(good, "m", 10, 4)
    torch.save(payload, good / "product_embeddings.pt")
    with pytest.raises(InvalidArtifactsError, match="not a loadable tensor file"):
        embeddings_files.load_torch(good / "product_embeddings.pt", good)
    with pytest.raises(ChecksumMismatchError):
        bert.load_embeddings(version)
    assert not sentinel.exists()
    # Control: the payload is live; without weights_only it does run.
    torch.load(good / "product_embeddings.pt", weights_only=False)
    assert sentinel.exists()


@pytest.fixture
def fake_pt_version(bert: BERTEmbeddingsRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A registered ``.pt`` version, with torch replaced by a stub (torch need not be installed)."""
    monkeypatch.setattr(bert_module, "torch_available", lambda: True)
    monkeypatch.setattr(embeddings_files, "torch_available", lambda: True)
    monkeypatch.setattr(embeddings_files, "_read_tensor", lambda handle, path: np.zeros((10, 4), dtype=np.float32))
    folder = tmp_path / "artifacts" / "cf" / "bert" / "pt"
    folder.mkdir(parents=True)
    file_path = folder / "product_embeddings.pt"
    file_path.write_bytes(b"stub tensor bytes")
    return bert.register_embeddings(folder, "m", 10, 4), file_path


def test_pt_file_read_errors_are_typed(bert: BERTEmbeddingsRegistry, fake_pt_version: tuple[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the .pt branch hashed the file itself and let OSError escape raw.
    version, file_path = fake_pt_version
    assert bert.load_embeddings(version)[0].shape == (10, 4)

    def unreadable(path: Path, **_: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(embeddings_files, "open_regular_file", unreadable)
    with pytest.raises(InvalidArtifactsError, match="could not be read"):
        bert.load_embeddings(version)


def test_pt_file_changed_since_registration_is_a_checksum_mismatch(
        bert: BERTEmbeddingsRegistry, fake_pt_version: tuple[str, Path]) -> None:
    version, file_path = fake_pt_version
    file_path.write_bytes(b"other tensor bytes")
    with pytest.raises(ChecksumMismatchError, match="product_embeddings.pt"):
        bert.load_embeddings(version)


def test_load_torch_reports_a_vanished_file_as_invalid_artifacts(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifactsError, match="could not be read"):
        embeddings_files.load_torch(tmp_path / "gone.pt", tmp_path)


def test_argument_checks_use_the_shared_positive_int() -> None:
    from registry import validation
    from registry.serving import model_state

    assert not hasattr(bert_module, "_positive_int") and not hasattr(model_state, "_positive_int")
    assert bert_module.positive_int is validation.positive_int


# ---------------------------------------------------------------------- current version


def test_first_registered_becomes_current_and_set_current_best(bert: BERTEmbeddingsRegistry, embeddings_dir) -> None:
    assert bert.get_current_best() is None
    first = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16, version="bert_1")
    second = bert.register_embeddings(embeddings_dir("bert/v2"), "m", 25, 16, version="bert_2")
    assert bert.get_current_best()["version"] == first
    assert bert.set_current_best(second) is True
    assert bert.get_current_best()["version"] == second
    before = state(bert)
    assert bert.set_current_best(second) is True
    assert state(bert) == before, "setting the version that is already current must not write"
    with pytest.raises(ModelNotFoundError, match="bert_missing"):
        bert.set_current_best("bert_missing")
    with pytest.raises(KeyError):
        bert.set_current_best("bert_missing")
    assert bert.get_current_best()["version"] == second
    assert actions(bert, target=second) == ["REGISTER_EMBEDDINGS", "SET_CURRENT_EMBEDDINGS"]
    assert actions(bert, target=first) == ["REGISTER_EMBEDDINGS", "SET_CURRENT_EMBEDDINGS"]


# ---------------------------------------------------------------------- links


def test_links_require_existing_model_and_version_and_are_not_duplicated(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir
) -> None:
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    before = state(bert)
    with pytest.raises(ModelNotFoundError, match="als_missing"):
        bert.link_to_model(version, "als_missing")
    with pytest.raises(ModelNotFoundError, match="bert_missing"):
        bert.link_to_model("bert_missing", model_id)
    assert state(bert) == before
    assert bert.link_to_model(version, model_id) is True
    after_first = state(bert)
    assert bert.link_to_model(version, model_id) is True
    assert state(bert) == after_first
    assert bert.get_embeddings(version)["linked_models"] == [model_id]
    assert actions(bert, target=version).count("LINK") == 1
    assert bert.unlink_model(version, model_id) is True
    assert bert.unlink_model(version, model_id) is False
    assert bert.get_embeddings(version)["linked_models"] == []
    assert actions(bert, target=version)[-1] == "UNLINK"


def test_bert_integration_links_automatically_and_unknown_version_is_refused(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir
) -> None:
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    model_id = registry.register_model(
        model_dir("bert_als/v1", model_type="bert_als"), "bert_als", {}, {"ndcg@10": 0.2}, {},
        bert_integration={"embeddings_version": version, "projection_method": "svd"},
    )
    assert bert.get_embeddings(version)["linked_models"] == [model_id]
    before = state(bert)
    with pytest.raises(ModelNotFoundError, match="bert_missing"):
        registry.register_model(model_dir("bert_als/v2", model_type="bert_als"), "bert_als", {}, {}, {},
                                bert_integration={"embeddings_version": "bert_missing"}, version="v2")
    assert registry.get_model("bert_als_v2") is None
    assert state(bert) == before


def test_deleting_a_cf_model_removes_its_links(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir
) -> None:
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    spare = bert.register_embeddings(embeddings_dir("bert/v2"), "m", 25, 16)
    kept = registry.register_model(model_dir("als/v1", seed=1), "als", {}, {"ndcg@10": 0.3}, {})
    gone = registry.register_model(model_dir("als/v2", seed=2), "als", {}, {"ndcg@10": 0.2}, {},
                                   bert_integration={"embeddings_version": version})
    bert.link_to_model(version, kept)
    registry.select_best_model("ndcg@10")
    assert sorted(bert.get_embeddings(version)["linked_models"]) == sorted([kept, gone])
    registry.delete_model(gone)
    assert bert.get_embeddings(version)["linked_models"] == [kept]
    assert bert.get_stats()["total_links"] == 1
    bert.unlink_model(version, kept)
    bert.set_current_best(spare)
    assert bert.delete_embeddings(version) is True


# ---------------------------------------------------------------------- listing and stats


def test_list_embeddings_newest_first(bert: BERTEmbeddingsRegistry, embeddings_dir) -> None:
    versions = [bert.register_embeddings(embeddings_dir(f"bert/v{i}"), f"m{i}", 25, 16, version=f"bert_{i}") for i in range(3)]
    listed = bert.list_embeddings()
    assert [item["version"] for item in listed] == versions[::-1]
    assert [item["is_current"] for item in listed] == [False, False, True]
    assert all(item["linked_models"] == [] for item in listed)
    assert "linked_models" not in bert.list_embeddings(include_linked_models=False)[0]


def test_get_stats(bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir) -> None:
    empty = bert.get_stats()
    assert (empty["total_embeddings"], empty["current_best"], empty["total_linked_models"]) == (0, None, 0)
    a = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    b = bert.register_embeddings(embeddings_dir("bert/v2"), "m", 25, 16)
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    bert.link_to_model(a, model_id)
    bert.link_to_model(b, model_id)
    stats = bert.get_stats()
    assert stats["total_embeddings"] == 2
    assert stats["current_best"] == a
    assert stats["total_linked_models"] == 1
    assert stats["total_links"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stats["last_updated"])


# ---------------------------------------------------------------------- deletion


def test_delete_refusals_keep_row_and_files(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir, tmp_path: Path
) -> None:
    current = bert.register_embeddings(embeddings_dir("bert/current"), "m", 25, 16, version="bert_current")
    linked = bert.register_embeddings(embeddings_dir("bert/linked"), "m", 25, 16, version="bert_linked")
    outside = bert.register_embeddings(make_embeddings_dir(tmp_path / "data" / "emb"), "m", 25, 16, version="bert_outside")
    shared = bert.register_embeddings(embeddings_dir("bert/current"), "m", 25, 16, version="bert_shared")
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    bert.link_to_model(linked, model_id)
    before = state(bert)

    with pytest.raises(ModelInUseError, match="current version"):
        bert.delete_embeddings(current)
    with pytest.raises(ModelInUseError, match=f"linked to CF models \\['{model_id}'\\]"):
        bert.delete_embeddings(linked, delete_files=True)
    with pytest.raises(InvalidArgumentError, match="does not resolve inside the artifacts root"):
        bert.delete_embeddings(outside, delete_files=True)
    with pytest.raises(ModelInUseError, match="overlaps embeddings 'bert_current'"):
        bert.delete_embeddings(shared, delete_files=True)
    with pytest.raises(ModelNotFoundError):
        bert.delete_embeddings("bert_missing")
    assert state(bert) == before
    assert (tmp_path / "data/emb/product_embeddings.npy").is_file()
    assert (tmp_path / "artifacts/cf/bert/current/product_embeddings.npy").is_file()

    # A folder that holds a CF model's artifacts is never deleted either.
    inside_model = bert.register_embeddings(
        make_embeddings_dir(tmp_path / "artifacts/cf/als/v1/bert"), "m", 25, 16, version="bert_in_model"
    )
    with pytest.raises(ModelInUseError, match="overlaps model"):
        bert.delete_embeddings(inside_model, delete_files=True)

    # Without delete_files the shared and outside versions can go; files stay.
    assert bert.delete_embeddings(shared) is True
    assert bert.delete_embeddings(outside) is True
    assert (tmp_path / "data/emb/product_embeddings.npy").is_file()
    assert actions(bert, target=shared)[-1] == "DELETE_EMBEDDINGS"


def test_delete_files_removes_a_confined_unshared_folder(bert: BERTEmbeddingsRegistry, embeddings_dir, tmp_path: Path) -> None:
    bert.register_embeddings(embeddings_dir("bert/current"), "m", 25, 16)
    old = bert.register_embeddings(embeddings_dir("bert/old"), "m", 25, 16)
    assert bert.delete_embeddings(old, delete_files=True) is True
    assert not (tmp_path / "artifacts/cf/bert/old").exists()
    assert (tmp_path / "artifacts/cf/bert/current/product_embeddings.npy").is_file()
    assert bert.get_embeddings(old) is None


def test_delete_files_refuses_a_symlinked_folder(bert: BERTEmbeddingsRegistry, embeddings_dir, tmp_path: Path) -> None:
    bert.register_embeddings(embeddings_dir("bert/current"), "m", 25, 16)
    target = make_embeddings_dir(tmp_path / "elsewhere" / "emb")
    link = tmp_path / "artifacts" / "cf" / "bert" / "link"
    link.symlink_to(target, target_is_directory=True)
    version = bert.register_embeddings("artifacts/cf/bert/link", "m", 25, 16)
    with pytest.raises(InvalidArgumentError, match="symlink"):
        bert.delete_embeddings(version, delete_files=True)
    assert (target / "product_embeddings.npy").is_file()
    assert bert.get_embeddings(version) is not None


# ---------------------------------------------------------------------- JSON export and audit


def test_bert_registry_json_follows_the_doc_shape(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir
) -> None:
    assert bert_json(bert)["embeddings"] == {} and bert_json(bert)["current_best"] is None
    first = bert.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16,
                                     generation_config={"batch_size": 32}, data_version="abc")
    second = bert.register_embeddings(embeddings_dir("bert/v2"), "vinai/phobert-base", 25, 16)
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    bert.link_to_model(second, model_id)
    document = bert_json(bert)
    assert set(document) == {"current_best", "embeddings", "metadata"}
    assert document["current_best"] == first
    assert list(document["embeddings"]) == [first, second]
    entry = document["embeddings"][first]
    assert entry == bert.get_embeddings(first)
    assert {"version", "path", "created_at", "model_name", "num_items", "embedding_dim", "data_version",
            "git_commit", "generation_config", "text_fields_used", "linked_models"} <= set(entry)
    assert entry["path"] == "artifacts/cf/bert/v1" and entry["generation_config"] == {"batch_size": 32}
    assert document["embeddings"][second]["linked_models"] == [model_id]
    assert document["metadata"]["num_embeddings"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", document["metadata"]["last_updated"])

    bert.set_current_best(second)
    bert.delete_embeddings(first)
    document = bert_json(bert)
    assert document["current_best"] == second
    assert list(document["embeddings"]) == [second]
    assert document["metadata"]["num_embeddings"] == 1


def test_every_mutation_is_audited_in_the_database_and_the_log(
    bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir, model_dir
) -> None:
    a = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16, version="bert_a")
    b = bert.register_embeddings(embeddings_dir("bert/v2"), "m", 25, 16, version="bert_b")
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    bert.link_to_model(b, model_id)
    bert.unlink_model(b, model_id)
    bert.set_current_best(b)
    sha_a = bert.get_embedding_file(a)["sha256"]
    bert.delete_embeddings(a)
    events = [e for e in bert.context.read(audit.query_events) if e["action"] != "REGISTER"]
    assert [(e["action"], e["target"]) for e in events] == [
        ("REGISTER_EMBEDDINGS", a), ("SET_CURRENT_EMBEDDINGS", a), ("REGISTER_EMBEDDINGS", b),
        ("LINK", b), ("UNLINK", b), ("SET_CURRENT_EMBEDDINGS", b), ("DELETE_EMBEDDINGS", a),
    ]
    assert events[0]["details"]["sha256"] == sha_a
    assert events[5]["details"]["previous_version"] == a
    log = bert.audit_log_path.read_text().splitlines()
    assert any(re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \| LINK \| {b} \| model_id={model_id}", line) for line in log)
    assert sum(" | REGISTER_EMBEDDINGS | " in line for line in log) == 2


def test_control_characters_are_escaped_in_the_log_and_kept_in_the_database(bert: BERTEmbeddingsRegistry, embeddings_dir) -> None:
    name, data_version = "bert\x1b[31m-red\x1b[0m", "2025\x1b[2J-01"
    version = bert.register_embeddings(embeddings_dir("bert/v1"), name, 25, 16, data_version=data_version)
    info = bert.get_embeddings(version)
    assert (info["model_name"], info["data_version"]) == (name, data_version)
    logged = bert.audit_log_path.read_bytes()
    assert b"\x1b" not in logged
    assert b"model_name=bert\\x1b[31m-red\\x1b[0m shape=25x16" in logged


# ---------------------------------------------------------------------- loading


def test_load_bert_embeddings_verifies_the_checksum(
    bert: BERTEmbeddingsRegistry, embeddings_dir, database_url: str, tmp_path: Path
) -> None:
    path = embeddings_dir("bert/v1", seed=4)
    version = bert.register_embeddings(path, "m", 25, 16)
    array, info = load_bert_embeddings(registry_path=bert.registry_path, database_url=database_url)
    np.testing.assert_array_equal(array, np.load(tmp_path / path / "product_embeddings.npy"))
    assert info == bert.get_embeddings(version)

    file_path = tmp_path / path / "product_embeddings.npy"
    data = bytearray(file_path.read_bytes())
    data[-1] ^= 0xFF  # same size, same header, one changed value
    file_path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="differs from the .* recorded at registration"):
        load_bert_embeddings(version, registry_path=bert.registry_path, database_url=database_url)
    with pytest.raises(ChecksumMismatchError):
        bert.load_embeddings()

    file_path.unlink()
    with pytest.raises(InvalidArtifactsError, match="is missing"):
        bert.load_embeddings(version)


def test_load_bert_embeddings_errors(bert: BERTEmbeddingsRegistry, database_url: str, embeddings_dir) -> None:
    with pytest.raises(NoModelLoadedError, match="No current best embeddings"):
        load_bert_embeddings(registry_path=bert.registry_path, database_url=database_url)
    bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    with pytest.raises(ModelNotFoundError, match="bert_missing") as raised:
        load_bert_embeddings("bert_missing", registry_path=bert.registry_path, database_url=database_url)
    assert isinstance(raised.value, KeyError)


def test_load_bert_embeddings_never_creates_a_registry(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "bert_registry.json"
    with pytest.raises(RegistryNotFoundError):
        load_bert_embeddings(registry_path=missing)
    assert not missing.parent.exists()


def test_missing_registry_without_auto_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BERTEmbeddingsRegistry(tmp_path / "none" / "bert_registry.json", auto_create=False)


# ---------------------------------------------------------------------- shared instances


def test_get_bert_registry_is_one_instance_per_location(tmp_path: Path) -> None:
    first = get_bert_registry(tmp_path / "a" / "bert_registry.json")
    assert get_bert_registry(tmp_path / "a" / "bert_registry.json") is first
    other = get_bert_registry(tmp_path / "b" / "bert_registry.json")
    assert other is not first
    bert_module.reset_bert_registries()
    assert get_bert_registry(tmp_path / "a" / "bert_registry.json") is not first


def test_bert_and_cf_registries_share_one_database(bert: BERTEmbeddingsRegistry, registry: ModelRegistry, embeddings_dir) -> None:
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "m", 25, 16)
    assert registry.context.read(lambda s: s.get(BertEmbedding, version)) is not None
    assert bert.registry_path.parent == registry.registry_path.parent
    assert json.loads(registry.registry_path.read_text())["metadata"]["generation"] == bert.get_stats()["generation"]


def test_overwriting_a_cf_model_keeps_its_manual_links(registry, registry_path, database_url, tmp_path, model_dir, embeddings_dir):
    from registry import BERTEmbeddingsRegistry

    bert = BERTEmbeddingsRegistry(registry_path.parent / "bert_registry.json", database_url=database_url, root=tmp_path)
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16, version="bert_v1")
    path = model_dir("als/v1", seed=1)
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {}, version="v1")
    bert.link_to_model(version, model_id)
    model_dir("als/v1", seed=2)  # retrained in place
    registry.register_model(path, "als", {}, {"ndcg@10": 0.2}, {}, version="v1", overwrite=True)
    listed = {e["version"]: e["linked_models"] for e in bert.list_embeddings()}
    assert listed[version] == [model_id]
