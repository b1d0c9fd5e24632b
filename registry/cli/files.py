"""File commands: registry.json export and import, backup and restore, and cleanup of old models."""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..errors import InvalidArgumentError
from .common import busy, echo_json, emit, records_table, state_of, to_jsonable


def export_json(
    ctx: typer.Context,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the registry.json document instead of writing it.")] = False,
) -> None:
    """Write registry.json (and bert_registry.json) from the database now.

    Example: cfreg export-json
    """
    state = state_of(ctx)
    registry = state.registry()
    if stdout:
        echo_json(registry.registry)
        return
    path = registry.export_registry_json()
    emit(state, {"registry_json": str(path)}, lambda: state.out.print(f"Wrote {path}"))


def import_json(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A registry.json written by the original JSON registry.")],
    bert: Annotated[Path | None, typer.Option("--bert", exists=True, dir_okay=False, help="Its bert_registry.json.")] = None,
    replace: Annotated[bool, typer.Option(help="Replace what the registry holds (default: add to it).")] = False,
) -> None:
    """Import a legacy registry.json (and bert_registry.json).

    Example: cfreg import-json old/registry.json --bert old/bert_registry.json
    """
    state = state_of(ctx)
    registry = state.registry(create=True)
    with busy(state, f"Importing {path}..."):
        result = registry.import_registry_json(path, bert, replace=replace)

    def render() -> None:
        state.out.print(
            f"Imported {result['models']} model(s), {result['embeddings']} embeddings version(s), "
            f"{result['ab_tests']} A/B test(s); current best: {result['current_best']}"
        )
        for warning in result.get("warnings", []):
            state.err.print(Text(f"warning: {warning}"), soft_wrap=True)

    emit(state, result, render)


class BackupFormat(str, Enum):
    """What ``cfreg backup --format`` writes."""

    json = "json"
    sqlite = "sqlite"


def backup(
    ctx: typer.Context,
    backup_dir: Annotated[Path | None, typer.Option(help="Where to write the backup (default: beside the registry).")] = None,
    backup_format: Annotated[BackupFormat, typer.Option("--format", help="json: full snapshot in the registry.json schema (any backend); sqlite: online copy of registry.db.")] = BackupFormat.json,
) -> None:
    """Write a consistent full snapshot of the registry (audit and selection history included).

    Example: cfreg backup --backup-dir backups/
    """
    from ..backup import backup_registry

    state = state_of(ctx)
    registry = state.registry()
    source: Path = registry.registry_path
    if backup_format is BackupFormat.sqlite:
        db_file = registry.sqlite_file
        if db_file is None:
            raise InvalidArgumentError(
                f"--format sqlite needs a SQLite registry; {registry.database_url} is not one (use --format json)"
            )
        source = db_file
    with busy(state, "Backing up..."):
        path = backup_registry(source, backup_dir=backup_dir, database_url=state.database_url)
    emit(state, {"backup_path": str(path)}, lambda: state.out.print(f"Backup written: {path}"))


def restore(
    ctx: typer.Context,
    backup_path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A backup (JSON or .db) or a registry.json.")],
    no_current_backup: Annotated[bool, typer.Option("--no-current-backup", help="Do not back up the current state first.")] = False,
) -> None:
    """Replace the registry's content with a backup, in one transaction.

    The current state is backed up first unless --no-current-backup.

    Example: cfreg restore artifacts/cf/registry_backup_20250116_120000_123456.json
    """
    from ..restore import restore_registry

    state = state_of(ctx)
    with busy(state, f"Restoring {backup_path}..."):
        result = restore_registry(backup_path, state.registry_path, create_current_backup=not no_current_backup,
                                  database_url=state.database_url)
    emit(state, result, lambda: state.out.print(f"Restored {backup_path}"))


def list_backups(
    ctx: typer.Context,
    backup_dir: Annotated[Path | None, typer.Option(help="Where backups are (default: beside the registry).")] = None,
) -> None:
    """List backups, newest first.

    Example: cfreg list-backups
    """
    from .. import utils

    state = state_of(ctx)
    backups = utils.list_backups(state.registry_path, backup_dir=backup_dir)
    emit(state, backups, lambda: state.out.print(records_table(backups, title="backups") if backups else "No backups."))


def cleanup(
    ctx: typer.Context,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Models kept per type (newest by created_at).")],
    archive_old: Annotated[bool, typer.Option("--archive-old", help="Archive the others instead of deleting them.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    delete_files: Annotated[bool, typer.Option("--delete-files", help="When deleting, also remove the folders (inside the artifacts root only).")] = False,
) -> None:
    """Keep the N newest models per type; archive or delete the rest.

    The current best, models in a running A/B test and models linked to BERT embeddings are never touched.

    Example: cfreg cleanup --keep-last 5 --archive-old --dry-run
    """
    from rich.progress import Progress

    from .. import model_cleanup

    state = state_of(ctx)
    registry = state.registry()
    if dry_run or not state.interactive:
        report = model_cleanup.cleanup_old_models(registry, keep_last, archive_old=archive_old, dry_run=dry_run,
                                                delete_files=delete_files)
    else:
        with Progress(console=state.err, transient=True) as progress:
            task = progress.add_task("Cleaning up", total=None)
            report = model_cleanup.cleanup_old_models(
                registry, keep_last, archive_old=archive_old, delete_files=delete_files,
                on_item=lambda item, done, total: progress.update(task, completed=done, total=total),
            )

    def render() -> None:
        changed = [i for i in report.items if i.action != "keep"]
        verb = "Would" if dry_run else "Did"
        if changed:
            state.out.print(records_table([to_jsonable(i) for i in changed],
                                          ["model_id", "model_type", "created_at", "action", "reason"],
                                          title=f"{verb}: cleanup (keep {keep_last} per type)"))
        state.out.print(
            f"{'Dry run: ' if dry_run else ''}kept {len(report.kept)}, "
            f"{'would archive' if dry_run and archive_old else 'archived'} "
            f"{len(report.ids('archive')) if dry_run else len(report.archived)}, "
            f"{'would delete' if dry_run and not archive_old else 'deleted'} "
            f"{len(report.ids('delete')) if dry_run else len(report.deleted)}, skipped {len(report.skipped)}"
        )

    emit(state, report, render)
