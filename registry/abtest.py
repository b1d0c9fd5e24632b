"""A/B tests (canary rollouts) owned by the registry, and the doc's deterministic routing."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .export import ab_test_info
from .models import ABTest

if TYPE_CHECKING:
    from .context import RegistryContext


def get_model_for_user(user_id: Any, ab_config: dict[str, Any]) -> str:
    """Route a user to the control or treatment model (the doc's function, verbatim semantics).

    The md5 of ``str(user_id)`` modulo 100 is compared with ``traffic_split * 100``:
    below goes to the treatment. A test that is not running routes everyone to control.
    """
    if ab_config["status"] != "running":
        return ab_config["control_model"]
    hash_val = int(hashlib.md5(str(user_id).encode()).hexdigest(), 16)
    if (hash_val % 100) < ab_config["traffic_split"] * 100:
        return ab_config["treatment_model"]
    return ab_config["control_model"]


def running_test(session: Session) -> ABTest | None:
    """The running A/B test row, if any (at most one exists)."""
    return session.scalars(select(ABTest).where(ABTest.status == "running")).first()


def routing_config(context: RegistryContext) -> dict[str, Any] | None:
    """The running test as the doc's ``ab_test`` dict, or None when no test runs."""
    def work(session: Session) -> dict[str, Any] | None:
        test = running_test(session)
        return None if test is None else ab_test_info(test)

    return context.read(work)
