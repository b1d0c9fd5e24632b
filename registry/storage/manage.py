"""Checking recorded files against their bytes (local or in a store), and pushing a local model into the store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, selection
from ..artifacts import fingerprint, sha256_file
from ..errors import ArtifactStoreError, ChecksumMismatchError, ConflictError, InvalidArgumentError, InvalidArtifactsError
from ..models import ArtifactFile, BertEmbedding, Model
from . import store
from .store import is_uri
from .upload import upload_files

if TYPE_CHECKING:
    from ..context import RegistryContext

logger = logging.getLogger(__name__)


def _location(ctx: RegistryContext, path: str, file_name: str, uri: str | None) -> str:
    if uri is not None:
        return uri
    if is_uri(path):
        return f"{path.rstrip('/')}/{file_name}"
    return str(ctx.resolve(path) / file_name)


def check_file(location: str, size: int, sha256: str) -> str | None:
    """What is wrong with one recorded file (``None``: it exists with its recorded size and sha256)."""
    try:
        if is_uri(location):
            found = store.object_size(location)
            if found is None:
                return "missing"
            if found != size:
                return f"size differs ({found} bytes, {size} recorded)"
            digest, _ = store.hash_object(location)
        else:
            path = Path(location)
            if not path.exists():
                return "missing"
            found = path.stat().st_size
            if found != size:
                return f"size differs ({found} bytes, {size} recorded)"
            digest = sha256_file(path)
    except (ArtifactStoreError, InvalidArtifactsError, OSError) as exc:
        return f"unreadable ({exc})"
    return None if digest == sha256 else "sha256 differs"


def verify_files(ctx: RegistryContext, model_id: str | None = None) -> dict[str, Any]:
    """Check every recorded file of one model (or of all models and embeddings versions).

    Returns:
        ``{"checked": files checked, "problems": [{"kind", "id", "file_name", "location", "problem"}]}``.

    Raises:
        ModelNotFoundError: ``model_id`` is not registered.
    """
    def work(session: Session) -> list[tuple[str, str, str, str, int, str]]:
        query = select(Model.model_id, Model.path, ArtifactFile.file_name, ArtifactFile.uri, ArtifactFile.size_bytes,
                       ArtifactFile.sha256).join(ArtifactFile, ArtifactFile.model_id == Model.model_id)
        if model_id is not None:
            selection.require_model(session, model_id)
            query = query.where(Model.model_id == model_id)
        rows = [("model", mid, _location(ctx, path, name, uri), name, size, sha)
                for mid, path, name, uri, size, sha in session.execute(query.order_by(Model.model_id, ArtifactFile.file_name))]
        if model_id is None:
            for row in session.scalars(select(BertEmbedding).where(BertEmbedding.sha256.is_not(None))
                                       .order_by(BertEmbedding.version)):
                if row.file_name and row.size_bytes is not None:
                    rows.append(("embeddings", row.version, _location(ctx, row.path, row.file_name, row.uri),
                                 row.file_name, row.size_bytes, row.sha256 or ""))
        return rows

    rows = ctx.read(work)
    problems = []
    for kind, ident, location, name, size, sha in rows:
        problem = check_file(location, size, sha)
        if problem is not None:
            problems.append({"kind": kind, "id": ident, "file_name": name, "location": location, "problem": problem})
    return {"checked": len(rows), "problems": problems}


def push_model(ctx: RegistryContext, model_id: str) -> dict[str, Any]:
    """Upload a model's local files into the registry's store and record the store URIs (one audited change).

    The local files are checked against their recorded sha256 first and stay where
    they are. A model already in the store is left alone (``uploaded`` 0).

    Returns:
        ``{"model_id", "path", "uploaded", "files"}``.

    Raises:
        InvalidArgumentError: the registry has no artifact store.
        ModelNotFoundError: unknown id.
        ChecksumMismatchError: a local file no longer matches its record.
        ArtifactStoreError: an upload failed (nothing is recorded).
        ConflictError: the model's files were re-registered meanwhile.
    """
    artifact_store = ctx.artifact_store
    if artifact_store is None:
        raise InvalidArgumentError("this registry has no artifact store",
                                   hint="create it with ModelRegistry(..., artifact_store=URI)",
                                   cli_hint="set one with `cfreg init --artifact-store URI`")

    def read(session: Session) -> tuple[str, dict[str, tuple[int, str, str | None]]]:
        model = selection.require_model(session, model_id)
        files = {row.file_name: (row.size_bytes, row.sha256, row.uri)
                 for row in session.scalars(select(ArtifactFile).where(ArtifactFile.model_id == model_id))}
        return model.path, files

    path, files = ctx.read(read)
    if files and all(uri is not None and artifact_store.owns(uri) for _, _, uri in files.values()):
        return {"model_id": model_id, "path": path, "uploaded": 0, "files": len(files)}
    if is_uri(path) or any(uri is not None for _, _, uri in files.values()):
        raise InvalidArgumentError(f"model {model_id!r} lives in another store ({path}); only local models are pushed")
    if not files:
        raise InvalidArgumentError(f"model {model_id!r} has no recorded files (a legacy import); re-register it first")
    folder = ctx.resolve(path)
    prints = []
    for name, (size, sha, _) in sorted(files.items()):
        print_ = fingerprint(folder / name, within=folder)
        if print_.sha256 != sha or print_.size_bytes != size:
            raise ChecksumMismatchError(f"{folder / name} no longer matches the sha256 recorded for model {model_id!r}; "
                                        "nothing was pushed")
        prints.append(print_)
    before = {p.file_name: store.object_size(artifact_store.object_uri(p.sha256)) for p in prints}
    uris = upload_files(artifact_store, folder, prints)
    uploaded = sum(1 for p in prints if before[p.file_name] != p.size_bytes)
    target = artifact_store.model_uri(model_id)

    def work(session: Session) -> None:
        model = selection.require_model(session, model_id)
        rows = {row.file_name: row for row in session.scalars(select(ArtifactFile).where(ArtifactFile.model_id == model_id))}
        if model.path != path or {name: row.sha256 for name, row in rows.items()} != {n: f[1] for n, f in files.items()}:
            raise ConflictError(f"model {model_id!r} was re-registered while it was pushed; push it again")
        model.path = target
        for name, row in rows.items():
            row.uri = uris[name]
        audit.record(session, "PUSH", model_id, f"{uploaded} of {len(rows)} files uploaded to {artifact_store.uri}",
                     {"from": path, "path": target, "uploaded": uploaded})

    ctx.mutate(work)
    return {"model_id": model_id, "path": target, "uploaded": uploaded, "files": len(files)}
