"""The documented ``registry.utils`` backup helpers; they live in :mod:`registry.backup` and :mod:`registry.restore`.

``backup_registry``, ``list_backups`` and ``restore_registry`` (and the helpers callers
used from this module before the split) are re-exported here unchanged.
"""

from __future__ import annotations

from ..backup import BACKUP_FORMAT, BACKUP_FORMAT_VERSION, backup_registry, default_backup_dir, dump_tables, list_backups
from ..backup_files import MAX_BACKUP_BYTES, copy_to_backup
from ..restore import RESTORED_SETTINGS, restore_registry

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_FORMAT_VERSION",
    "MAX_BACKUP_BYTES",
    "RESTORED_SETTINGS",
    "backup_registry",
    "copy_to_backup",
    "default_backup_dir",
    "dump_tables",
    "list_backups",
    "restore_registry",
]
