"""The specific error classes: typed for callers who want them, caught by the broader ``except`` clauses as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry import (
    ABTestNotFoundError,
    BERTEmbeddingsRegistry,
    EmbeddingsNotFoundError,
    InvalidStateError,
    ModelInUseError,
    ModelNotFoundError,
    ModelRegistry,
)


def test_not_found_and_state_errors_are_specific(registry: ModelRegistry, registry_path: Path, database_url: str,
                                                 model_dir: Any, tmp_path: Path) -> None:
    a = registry.register_model(model_dir("als/a"), "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    b = registry.register_model(model_dir("als/b", seed=2), "als", {}, {"ndcg@10": 0.2}, {}, version="b")
    registry.start_ab_test(a, b, 0.1)
    with pytest.raises(InvalidStateError, match="already running") as running:
        registry.start_ab_test(b, a, 0.1)
    assert isinstance(running.value, ModelInUseError) and running.value.code == "invalid_state"
    with pytest.raises(ABTestNotFoundError) as missing:
        registry.stop_ab_test("ghost")
    assert isinstance(missing.value, (ModelNotFoundError, KeyError)) and missing.value.code == "ab_test_not_found"
    registry.stop_ab_test()
    registry.archive_model(a)
    with pytest.raises(InvalidStateError, match="only active models"):
        registry.promote_model(a)
    bert = BERTEmbeddingsRegistry(registry_path.with_name("bert_registry.json"), database_url=database_url, root=tmp_path)
    with pytest.raises(EmbeddingsNotFoundError) as unknown:
        bert.set_current_best("bert_ghost")
    assert isinstance(unknown.value, ModelNotFoundError) and unknown.value.code == "embeddings_not_found"
