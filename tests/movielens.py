"""MovieLens-100k for real-data tests, taken from the ``recbole`` wheel on the package index.

The data set ships inside ``recbole==1.2.1`` (``recbole/dataset_example/ml-100k/``). The wheel is
fetched once per machine with ``pip download --no-deps`` into a cache folder under the system's
temp directory (``CFREG_MOVIELENS_CACHE`` overrides it), guarded by a file lock so parallel test
workers download it once. Only the interactions file is read from the zip; nothing is installed.

Tests that use it are marked ``slow``: the first call needs the package index.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

RECBOLE_VERSION = "1.2.1"
WHEEL_NAME = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
INTERACTIONS_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def cache_dir() -> Path:
    """Where the wheel is kept between test runs."""
    configured = os.environ.get("CFREG_MOVIELENS_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "cfreg-movielens"


def recbole_wheel() -> Path:
    """The recbole wheel on disk, downloaded on first use."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / WHEEL_NAME
    with FileLock(str(folder / "download.lock")):
        if not wheel.is_file():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 f"recbole=={RECBOLE_VERSION}", "-d", str(folder)],
                check=True, timeout=600,
            )
    return wheel


def load_ratings() -> pd.DataFrame:
    """All 100,000 ratings: columns ``user_id``, ``item_id`` (strings), ``rating``, ``timestamp``."""
    with zipfile.ZipFile(recbole_wheel()) as archive:
        raw = archive.read(INTERACTIONS_MEMBER)
    frame = pd.read_csv(io.BytesIO(raw), sep="\t", dtype={0: str, 1: str})
    frame.columns = ["user_id", "item_id", "rating", "timestamp"]
    return frame


def train_test_split(ratings: pd.DataFrame, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``test_fraction`` of each user's interactions (users keep at least one in train)."""
    rng = np.random.default_rng(seed)
    shuffled = ratings.iloc[rng.permutation(len(ratings))]
    rank = shuffled.groupby("user_id").cumcount()
    size = shuffled.groupby("user_id")["item_id"].transform("size")
    is_test = (rank < (size * test_fraction).astype(int)) & (size > 1)
    return shuffled[~is_test].reset_index(drop=True), shuffled[is_test].reset_index(drop=True)
