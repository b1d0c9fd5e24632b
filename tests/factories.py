"""Builders for real artifact folders (small ``.npy`` matrices written with numpy).

Importable from subprocess workers too (tests put ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def make_model_dir(
    folder: str | Path,
    model_type: str = "als",
    *,
    num_users: int = 40,
    num_items: int = 25,
    factors: int = 8,
    seed: int = 0,
    dtype: Any = np.float32,
    params: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    id_maps: bool = False,
) -> Path:
    """Write ``{type}_U.npy``, ``_V.npy``, ``_params.json``, ``_metadata.json`` into ``folder``."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    U, V = model_arrays(seed, num_users=num_users, num_items=num_items, factors=factors, dtype=dtype)
    np.save(path / f"{model_type}_U.npy", U)
    np.save(path / f"{model_type}_V.npy", V)
    (path / f"{model_type}_params.json").write_text(json.dumps(params or {"factors": factors, "regularization": 0.01}))
    meta = {"num_users": num_users, "num_items": num_items, "factors": factors, "model_type": model_type}
    meta.update(metadata or {})
    (path / f"{model_type}_metadata.json").write_text(json.dumps(meta))
    if id_maps:
        (path / f"{model_type}_user_ids.json").write_text(json.dumps([f"u{i}" for i in range(num_users)]))
        (path / f"{model_type}_item_ids.json").write_text(json.dumps([f"i{i}" for i in range(num_items)]))
    return path


def model_arrays(seed: int, *, num_users: int = 40, num_items: int = 25, factors: int = 8,
                 dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The ``(U, V)`` that :func:`make_model_dir` writes for ``seed`` (distinct seeds, distinct arrays)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((num_users, factors)).astype(dtype),
            rng.standard_normal((num_items, factors)).astype(dtype))


def make_embeddings_dir(folder: str | Path, *, num_items: int = 25, dim: int = 16, seed: int = 0,
                        file_name: str = "product_embeddings.npy") -> Path:
    """Write a BERT embeddings folder holding one ``.npy`` matrix of ``num_items x dim``."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(path / file_name, rng.standard_normal((num_items, dim)).astype(np.float32))
    return path
