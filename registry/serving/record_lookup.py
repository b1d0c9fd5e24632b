"""``RecordLookup``: a loader's reads of one model's record by id, skipped when nothing changed.

A loader reads a model's record (its folder and recorded files) each time it loads that model
from disk: :meth:`~registry.serving.loader.ModelLoader.load_model` of an evicted model, a
preload, an A/B arm. On SQLite the held connection's ``data_version`` says whether any
connection has committed since the record was read (see
:meth:`registry.held_reader.HeldReader.data_version`); while it has not, the record kept from
that read is the registry's record, so it is reused without a statement (~2 µs instead of
~0.1 ms). Any commit, by any process, makes every kept record stale at once. On PostgreSQL
there is no such stamp: every lookup is one statement, as before.
"""

from __future__ import annotations

from ..errors import ModelNotFoundError
from ..held_reader import HeldReader
from .model_files import RECORD_QUERY, ModelRecord, record_from_rows

MAX_KEPT_RECORDS = 256


class RecordLookup:
    """Model records by id on a loader's held reader (callers hold the loader's load lock)."""

    def __init__(self, reader: HeldReader, registry_name: str) -> None:
        self._reader = reader
        self._registry_name = registry_name  # for the not-found message
        self._kept: dict[str, ModelRecord] = {}
        self._kept_version: tuple[int, int] | None = None  # the reader's data_version the kept records are valid for

    def require(self, model_id: str) -> ModelRecord:
        """The registry's record of ``model_id``.

        Raises:
            ModelNotFoundError: no such model.
        """
        version = self._reader.data_version_or_none()
        if version is None or version != self._kept_version:
            self._kept.clear()
            self._kept_version = version
        record = self._kept.get(model_id)
        if record is not None:
            return record
        record = record_from_rows(self._reader.rows(RECORD_QUERY, {"model_id": model_id}))
        if record is None:
            raise ModelNotFoundError(
                f"Model {model_id!r} not found in registry {self._registry_name}; "
                "list the registered ids with ModelRegistry.list_models()"
            )
        if version is not None:
            if len(self._kept) >= MAX_KEPT_RECORDS:
                self._kept.clear()
            self._kept[model_id] = record
        return record
