"""The bench's other sides beside ours: the original JSON registry, and bulk fills for large N.

``tools/bench.py --original PATH`` runs the original JSON registry (the package folder holding its
``__init__.py``, ``registry.py`` and ``model_loader.py``) through the same documented calls as
ours, in alternation with ours, the floor and MLflow. Its code is loaded from PATH at run time and
never copied into this repository.

Registries grow through their public API up to :data:`API_FILL_LIMIT` models (the original JSON
registry, whose every registration rewrites its whole file, up to :data:`ORIGINAL_API_FILL_LIMIT`);
beyond that every side fills through a bulk path so that N = 100,000 stays within minutes: ours imports a
``registry.json`` of the new models (the documented migration path, one transaction), the floor
inserts with ``executemany`` in one transaction, the original JSON registry gets the entries its
``register_model`` would write and saves its file once. MLflow has no bulk path (about 20 ms per
version, 30 minutes for 100,000): it is not grown beyond the limit.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import random
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

API_FILL_LIMIT = 10_000
# The original rewrites its whole file on every registration (O(N) each): past this it bulk-fills.
ORIGINAL_API_FILL_LIMIT = 1_000
ORIGINAL_PACKAGE = "original_json_registry"

HYPERPARAMETERS = {"factors": 128, "regularization": 0.01, "iterations": 20, "alpha": 60}

logger = logging.getLogger("bench")


def load_original(package_folder: str | Path) -> ModuleType:
    """Import the original registry package from its folder under a private name.

    Its modules import each other relatively (``from .registry import ...``), so the folder is
    loaded as a package; nothing of it is added to ``sys.path``.
    """
    folder = Path(package_folder).resolve()
    init = folder / "__init__.py"
    if not init.is_file() or not (folder / "registry.py").is_file():
        raise SystemExit(f"--original {package_folder}: expected the original package folder (with __init__.py "
                         "and registry.py), e.g. .../recsys/cf/registry")
    spec = importlib.util.spec_from_file_location(ORIGINAL_PACKAGE, init, submodule_search_locations=[str(folder)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[ORIGINAL_PACKAGE] = module
    spec.loader.exec_module(module)
    logging.getLogger(f"{ORIGINAL_PACKAGE}.registry").setLevel(logging.WARNING)
    logging.getLogger(f"{ORIGINAL_PACKAGE}.model_loader").setLevel(logging.WARNING)
    return module


def legacy_entry(version: str, path: str, created_at: str, rng: random.Random,
                 metrics: Callable[[random.Random], dict[str, float]]) -> dict[str, Any]:
    """One model entry of a ``registry.json`` as the original's ``register_model`` writes it."""
    return {
        "model_type": "als", "version": version, "path": path, "created_at": created_at, "data_version": "bench",
        "git_commit": "0" * 40, "hyperparameters": HYPERPARAMETERS, "metrics": metrics(rng),
        "training_info": {"training_time_seconds": round(rng.uniform(50, 150), 1), "num_users": 26000},
        "status": "active",
    }


class Original:
    """The original JSON registry, through the calls the doc names (same arguments as ours)."""

    def __init__(self, package: ModuleType, folder: Path, bases: list[str], root: Path, seed: int,
                 metrics: Callable[[random.Random], dict[str, float]], metric_names: tuple[str, ...],
                 api_fill_limit: int = API_FILL_LIMIT) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.package = package
        self.registry_path = str(folder / "registry.json")
        self.audit_path = str(folder / "registry_audit.log")
        self.registry = package.ModelRegistry(self.registry_path, audit_log_path=self.audit_path)
        self.sources = [str(root / base) for base in bases]
        self.rng = random.Random(seed)
        self.metrics = metrics
        self.metric_names = metric_names
        self.count = 0
        self.metric_cycle = 0
        self._loader: Any = None
        self.api_fill_limit = min(api_fill_limit, ORIGINAL_API_FILL_LIMIT)

    def fill_to(self, target: int) -> None:
        while self.count < min(target, self.api_fill_limit):
            self.register(version=f"fill_{self.count + 1:06d}")
        if self.count < target:
            self.bulk_fill_to(target)

    def register(self, version: str | None = None) -> None:
        self.count += 1
        self.registry.register_model(
            self.sources[self.count % len(self.sources)], "als",
            hyperparameters=HYPERPARAMETERS, metrics=self.metrics(self.rng),
            training_info={"training_time_seconds": round(self.rng.uniform(50, 150), 1), "num_users": 26000},
            data_version="bench", git_commit="0" * 40,
            # Its generated versions have one-second resolution: a unique one keeps every call a registration.
            version=version or f"bench_{self.count:07d}",
        )

    def bulk_fill_to(self, target: int) -> None:
        """Add the entries its ``register_model`` would write, then save the file once."""
        models = self.registry._registry["models"]
        now = dt.datetime.now().isoformat()
        while self.count < target:
            self.count += 1
            version = f"fill_{self.count:06d}"
            models[f"als_{version}"] = legacy_entry(version, self.sources[self.count % len(self.sources)], now,
                                                    self.rng, self.metrics)
        self.registry._registry["metadata"]["num_models"] = len(models)
        self.registry._save_registry()

    def select(self) -> None:
        self.metric_cycle += 1
        self.registry.select_best_model(metric=self.metric_names[self.metric_cycle % 2])

    def list_models(self) -> None:
        self.registry.list_models()

    def list_first_page(self) -> None:
        # No paging in the original: the whole frame is built, then cut.
        self.registry.list_models().head(50)

    def stats(self) -> None:
        self.registry.get_registry_stats()

    def loader(self) -> Any:
        if self._loader is None:
            self._loader = self.package.ModelLoader(self.registry_path)
        return self._loader

    def reload_check(self) -> None:
        """Its hot reload: re-read registry.json and load the current best again (no change-check exists)."""
        self.loader().reload_model()

    def new_loader(self) -> None:
        """A new serving worker: ``ModelLoader()`` loads the current best on construction."""
        loader = self.package.ModelLoader(self.registry_path)
        assert loader.get_current_model() is not None


BULK_CHUNK_MODELS = 20_000  # ~11 MB of registry.json per import: under the importer's 16 MiB limit


def ours_bulk_fill(ours: Any, target: int, workdir: Path, metrics: Callable[[random.Random], dict[str, float]]) -> None:
    """Grow our registry past the API-fill limit by importing ``registry.json`` files of the new models."""
    now = dt.datetime.now(dt.UTC).isoformat()
    while ours.count < target:
        first = ours.count + 1
        models: dict[str, Any] = {}
        while ours.count < target and len(models) < BULK_CHUNK_MODELS:
            ours.count += 1
            version = f"fill_{ours.count:06d}"
            models[f"als_{version}"] = legacy_entry(version, ours.bases[ours.count % len(ours.bases)], now, ours.rng, metrics)
        document = {"version": "1.0", "models": models, "current_best": None,
                    "metadata": {"created_at": now, "last_updated": now, "num_models": len(models),
                                 "selection_criteria": "ndcg@10"}}
        chunk = workdir / f"bulk_{first:06d}_{ours.count:06d}.json"
        chunk.write_text(json.dumps(document), encoding="utf-8")
        counts = ours.registry.import_registry_json(chunk)
        logger.info("bulk import of %d models: %s", len(models), {k: counts[k] for k in ("models", "metrics")})
        chunk.unlink()


def floor_bulk_fill(floor: Any, target: int, metrics: Callable[[random.Random], dict[str, float]]) -> None:
    """The floor's bulk path: the same rows as its ``register``, ``executemany`` in one transaction."""
    now = dt.datetime.now(dt.UTC).isoformat()
    model_rows, metric_rows, file_rows, audit_rows = [], [], [], []
    while floor.count < target:
        floor.count += 1
        model_id = f"als_fill_{floor.count:06d}"
        model_rows.append((model_id, model_id[4:], "artifacts/cf/als/base_0", now,
                           json.dumps({"training_time_seconds": 100.0}), json.dumps({"factors": 128})))
        metric_rows += [(model_id, name, value) for name, value in metrics(floor.rng).items()]
        file_rows += [(model_id, f"als_{part}", 1000, "0" * 64)
                      for part in ("U.npy", "V.npy", "params.json", "metadata.json")]
        audit_rows.append((now, model_id))
    db = floor.db
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO models VALUES (?, 'als', ?, ?, 'active', ?, ?, ?)", model_rows)
    db.executemany("INSERT INTO model_metrics VALUES (?, ?, ?)", metric_rows)
    db.executemany("INSERT INTO artifact_files VALUES (?, ?, ?, ?)", file_rows)
    db.executemany("INSERT INTO audit (at, action, target, details) VALUES (?, 'REGISTER', ?, '{}')", audit_rows)
    db.execute("UPDATE settings SET generation = generation + 1 WHERE id = 1")
    db.execute("COMMIT")
