#!/usr/bin/env python
"""Register a trained model from its artifact folder; optionally promote it if it is better.

Usage::

    python tools/update_registry.py --model-path artifacts/cf/als/v2_20250116_141500 --auto-select

What is read from the folder (``registry.maintenance.read_model_folder``):

* model type: the ``{type}`` of the folder's single ``{type}_U.npy`` (several: pass ``--type``);
* hyperparameters: ``{type}_params.json``;
* metrics: ``{type}_metrics.json`` if present, else the ``metrics`` key of ``{type}_metadata.json``;
* training info, ``data_version``, ``git_commit``, ``baseline_comparison``: from the metadata;
* version: the folder name (``v2_20250116_141500`` -> ``als_v2_20250116_141500``).

With ``--auto-select`` the best active model by ``--metric`` becomes the current best only
if it beats the current best by at least ``--min-gain`` (relative); the decision is logged.
``cfreg register --auto-select`` runs the same function (``update_registry_from_folder``), but
it has no ``--min-improvement`` (always 0) and names the selection metric ``--select-by``
(docs/cli.md compares the two). Exit code 0 on success, 1 on a registry error (one ``Error:``
line on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from registry import ModelRegistry, RegistryError
from registry.cf_registry import DEFAULT_REGISTRY_PATH
from registry.maintenance import stored_artifacts_path, update_registry_from_folder

logger = logging.getLogger("update_registry")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, help="the model's artifact folder")
    parser.add_argument("--auto-select", action="store_true", help="promote it if it beats the current best")
    parser.add_argument("--metric", default="ndcg@10", help="selection metric (default: ndcg@10)")
    parser.add_argument("--min-gain", type=float, default=0.0,
                        help="relative gain over the current best required to promote (0.02 = 2%%; default 0)")
    parser.add_argument("--min-improvement", type=float, default=0.0,
                        help="required improvement over each model's own baseline (default 0)")
    parser.add_argument("--type", dest="model_type", default=None, help="model type (default: detected)")
    parser.add_argument("--version", default=None, help="version id (default: the folder name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model with the same id")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY_PATH, help=f"registry.json location (default: {DEFAULT_REGISTRY_PATH})")
    parser.add_argument("--database-url", default=None, help="database URL (default: $CFREG_DATABASE_URL or registry.db)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        registry = ModelRegistry(args.registry, database_url=args.database_url)
        result = update_registry_from_folder(
            registry,
            stored_artifacts_path(registry.root, args.model_path),
            model_type=args.model_type,
            version=args.version,
            overwrite=args.overwrite,
            auto_select=args.auto_select,
            metric=args.metric,
            min_gain=args.min_gain,
            min_improvement=args.min_improvement,
        )
    except RegistryError as exc:
        print(f"Error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"model_id: {result.model_id}")
        print(f"decision: {result.decision}")
        print(f"current_best: {result.current_best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
