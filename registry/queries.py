"""Session queries shared by feature modules (the A/B tests' lookups so far)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .defaults import AB_ARMS
from .errors import ABTestNotFoundError
from .models import ABTest

ARMS = AB_ARMS


def running_test(session: Session) -> ABTest | None:
    """The running A/B test row, if any (at most one exists)."""
    return session.scalars(select(ABTest).where(ABTest.status == "running")).first()


def require_test(session: Session, test_id: str | None) -> ABTest:
    """The test ``test_id``, or the running one when None; ``ModelNotFoundError`` when there is none."""
    if test_id is None:
        test = running_test(session)
        if test is None:
            raise ABTestNotFoundError("no A/B test is running; pass the test_id of a stopped test or start one")
        return test
    test = session.get(ABTest, test_id)
    if test is None:
        raise ABTestNotFoundError(f"A/B test {test_id!r} not found", hint="list_ab_tests() shows the registry's tests",
                                 cli_hint="`cfreg ab status --all` shows the registry's tests")
    return test
