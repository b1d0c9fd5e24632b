"""Who still uses a model or a folder: the guards run before archiving, deactivating or deleting."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .abtest import running_test
from .context import RegistryContext
from .errors import ModelInUseError
from .models import BertEmbedding, Model


def refuse_if_in_running_test(session: Session, model_id: str, verb: str) -> None:
    """ModelInUseError when ``model_id`` is an arm of the running A/B test."""
    test = running_test(session)
    if test is not None and model_id in (test.control_model, test.treatment_model):
        raise ModelInUseError(f"cannot {verb} {model_id!r}: it is in the running A/B test {test.test_id!r}",
                              hint=f"stop the test first with stop_ab_test({test.test_id!r})",
                              cli_hint=f"stop the test first with `cfreg ab stop {test.test_id}`")


def refuse_if_folder_shared(
    session: Session,
    context: RegistryContext,
    folder: Path,
    owner: str,
    *,
    skip_model: str | None = None,
    skip_embeddings: str | None = None,
) -> None:
    """ModelInUseError when any other model or embeddings version uses a folder overlapping ``folder``.

    Overlap means the same directory, one inside the other (symlinks resolved): deleting
    ``folder`` would remove files the other registration still points to.
    """
    real = Path(os.path.realpath(folder))

    def overlaps(stored: str) -> bool:
        other = Path(os.path.realpath(context.resolve(stored)))
        return other == real or other.is_relative_to(real) or real.is_relative_to(other)

    models = select(Model.model_id, Model.path)
    if skip_model is not None:
        models = models.where(Model.model_id != skip_model)
    for model_id, path in session.execute(models):
        if overlaps(path):
            raise ModelInUseError(f"cannot delete the files of {owner}: {str(folder)!r} overlaps model {model_id!r}")
    embeddings = select(BertEmbedding.version, BertEmbedding.path)
    if skip_embeddings is not None:
        embeddings = embeddings.where(BertEmbedding.version != skip_embeddings)
    for version, path in session.execute(embeddings):
        if overlaps(path):
            raise ModelInUseError(f"cannot delete the files of {owner}: {str(folder)!r} overlaps embeddings {version!r}")
