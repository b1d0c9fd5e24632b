#!/usr/bin/env python
"""Keep the N newest models per type; archive or delete the others.

Usage::

    python tools/cleanup_old_models.py --keep-last 5 --archive-old
    python tools/cleanup_old_models.py --keep-last 5 --dry-run

Per model type, models are ranked by ``created_at`` (newest first); the first N are kept.
Of the rest, the current best and the models of a running A/B test are always spared
(reported as skipped with the reason); the others are archived (``--archive-old``) or
deleted from the registry (default), their folders too with ``--delete-files`` (only
folders inside the artifacts root, never one another model or embedding still uses).
``--dry-run`` prints the plan and changes nothing. Same code as ``cfreg cleanup``.
Exit code 0 on success, 1 on a registry error, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from registry import ModelRegistry, RegistryError
from registry.cf_registry import DEFAULT_REGISTRY_PATH
from registry.maintenance import cleanup_old_models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-last", type=int, required=True, help="models kept per type (newest by created_at)")
    parser.add_argument("--archive-old", action="store_true", help="archive the others instead of deleting them")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument("--delete-files", action="store_true", help="when deleting, also remove the model folders")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY_PATH, help=f"registry.json location (default: {DEFAULT_REGISTRY_PATH})")
    parser.add_argument("--database-url", default=None, help="database URL (default: $CFREG_DATABASE_URL or registry.db)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.keep_last < 0:
        parser.error("--keep-last must be >= 0")
    if args.archive_old and args.delete_files:
        parser.error("--delete-files applies to deletion; it cannot be combined with --archive-old")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        registry = ModelRegistry(args.registry, auto_create=False, database_url=args.database_url)
        report = cleanup_old_models(registry, args.keep_last, archive_old=args.archive_old,
                                    dry_run=args.dry_run, delete_files=args.delete_files)
    except RegistryError as exc:
        print(f"Error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    prefix = "would " if args.dry_run else ""
    for item in report.items:
        if item.action == "keep":
            continue
        verb = {"archive": "archive", "delete": "delete", "skip": "skip", "none": "leave"}[item.action]
        print(f"{prefix}{verb} {item.model_id} ({item.model_type}, {item.created_at}): {item.reason}")
    archived = report.ids("archive") if args.dry_run else report.archived
    deleted = report.ids("delete") if args.dry_run else report.deleted
    print(f"{'dry run: ' if args.dry_run else ''}kept {len(report.kept)}, {prefix}archive {len(archived)}, "
          f"{prefix}delete {len(deleted)}, skipped {len(report.skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
