"""Import of registry.json / bert_registry.json written by the original JSON registry.

(Being written for the export/import issue; until then a new database does not import.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RegistryContext


def import_legacy_if_present(context: RegistryContext) -> bool:
    """Import the legacy JSON files beside a newly created database; True if something was imported."""
    return False
