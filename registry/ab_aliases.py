"""A/B test arms that follow an alias (``@champion_als``).

An arm given as ``@NAME`` names alias ``NAME`` instead of a model. The test row keeps the
alias (``ab_tests.control_alias`` / ``treatment_alias``) and, in ``control_model`` /
``treatment_model``, the model the alias points at *now*: it is resolved when the test
starts and again, in the same transaction, every time the alias moves while the test runs
(audit ``AB_ARM``). So everything that reads a test (the doc's routing function on
``registry.json``'s ``ab_test``, ``route_user``, loaders and the service, which re-read
the test at their next reload check, outcomes and results, the in-use guards) sees the
alias's current target, and moving the alias switches the arm.

Guards, both raising :class:`~registry.errors.ModelInUseError` naming the test:

* an alias named by a running test's arm cannot be deleted;
* it cannot move onto the model the other arm serves (a test needs two different models).
"""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from . import audit
from .errors import AliasInUseError, ModelInUseError
from .models import ABTest, table
from .validation import validate_identifier

PREFIX = "@"

_tests = table(ABTest).c
RUNNING_TESTS_FOLLOWING = select(_tests.test_id).where(
    _tests.status == "running", or_(_tests.control_alias == bindparam("alias"), _tests.treatment_alias == bindparam("alias"))
)

__all__ = ["PREFIX", "RUNNING_TESTS_FOLLOWING", "arm_alias", "follow_alias", "refuse_delete_if_arm", "tests_naming"]


def arm_alias(arm: object, role: str) -> str | None:
    """The alias an arm names (``"@champion"`` -> ``"champion"``), or None for a model id.

    Raises:
        InvalidArgumentError: the text after ``@`` breaks the alias (id) rules.
    """
    if isinstance(arm, str) and arm.startswith(PREFIX):
        return validate_identifier(arm[len(PREFIX):], f"{role} alias")
    return None


def tests_naming(session: Session, alias: str) -> list[ABTest]:
    """Running tests with an arm that follows ``alias`` (at most one test runs)."""
    # A Core probe first: every move of an alias asks, and usually no test follows it.
    return [test for test_id in session.scalars(RUNNING_TESTS_FOLLOWING, {"alias": alias})
            if (test := session.get(ABTest, test_id)) is not None]


def refuse_delete_if_arm(session: Session, alias: str) -> None:
    """AliasInUseError naming the test when a running A/B test has an arm following ``alias``."""
    for test in tests_naming(session, alias):
        arm = "control" if test.control_alias == alias else "treatment"
        raise AliasInUseError(
            f"alias {alias!r} is the {arm} arm of running A/B test {test.test_id!r}; it cannot be deleted while the test runs",
            test_id=test.test_id,
            hint=f"stop the test first with stop_ab_test({test.test_id!r}), or move the alias instead",
            cli_hint=f"stop the test first with `cfreg ab stop {test.test_id}`, or move the alias instead",
        )


def follow_alias(session: Session, alias: str, model_id: str) -> None:
    """Point every running test arm that follows ``alias`` at ``model_id`` (audit ``AB_ARM``).

    Called in the transaction that moves the alias, before it commits.

    Raises:
        ModelInUseError: the other arm of that test already serves ``model_id``.
    """
    for test in tests_naming(session, alias):
        for arm in ("control", "treatment"):
            if getattr(test, f"{arm}_alias") != alias:
                continue
            previous = getattr(test, f"{arm}_model")
            if previous == model_id:
                continue
            other = "treatment" if arm == "control" else "control"
            if getattr(test, f"{other}_model") == model_id:
                raise ModelInUseError(
                    f"alias {alias!r} cannot move to {model_id!r}: it is the {arm} arm of running A/B test "
                    f"{test.test_id!r}, whose {other} arm already serves {model_id!r}",
                    hint=f"stop the test first with stop_ab_test({test.test_id!r})",
                    cli_hint=f"stop the test first with `cfreg ab stop {test.test_id}`",
                )
            setattr(test, f"{arm}_model", model_id)
            audit.record(session, "AB_ARM", test.test_id, f"{arm}=@{alias} {previous} -> {model_id}",
                         {"arm": arm, "alias": alias, "previous_model_id": previous, "model_id": model_id})
