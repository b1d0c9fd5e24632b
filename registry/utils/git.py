"""Git helpers: never raise when git or a repository is missing, never hang (timeout)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

GIT_TIMEOUT_SECONDS = 2.0


def _git(args: list[str], repo_path: str | Path | None) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args],
            cwd=str(repo_path) if repo_path else None,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("git %s failed: %s", " ".join(args), exc)
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


def get_git_commit(repo_path: str | Path | None = None) -> str | None:
    """Full sha of ``HEAD``, or None outside a repository (or without git)."""
    return _git(["rev-parse", "HEAD"], repo_path) or None


def get_git_commit_short(repo_path: str | Path | None = None) -> str | None:
    """First 7 characters of :func:`get_git_commit`."""
    commit = get_git_commit(repo_path)
    return commit[:7] if commit else None


def get_git_branch(repo_path: str | Path | None = None) -> str | None:
    """Current branch name (``HEAD`` when detached), or None."""
    return _git(["rev-parse", "--abbrev-ref", "HEAD"], repo_path) or None


def is_git_clean(repo_path: str | Path | None = None) -> bool:
    """True when ``git status --porcelain`` reports nothing (False outside a repository)."""
    status = _git(["status", "--porcelain"], repo_path)
    return status == ""
