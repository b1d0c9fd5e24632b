"""A/B tests (canary rollouts) owned by the registry, and the doc's deterministic routing.

A test compares a *control* model with a *treatment* model; ``traffic_split`` is
the treatment's share of users. At most one test runs per registry (enforced by
a check in the write transaction and, as a backstop, the partial unique index
``uq_ab_tests_one_running``). Every change is one :meth:`RegistryContext.mutate`
transaction with its audit rows (``AB_START``, ``AB_SPLIT``, ``AB_STOP``,
``AB_PROMOTE``, ``AB_ROLLBACK``), so ``registry.json`` shows the new state under
``ab_test`` as soon as the change commits.

Usage::

    registry.start_ab_test("als_v1_20250115_103000", "als_v2_20250116_141500", 0.1)
    registry.route_user(42)                      # -> the arm user 42 is assigned to
    registry.update_traffic_split(None, 0.5)     # grow the canary
    registry.stop_ab_test(None, promote="treatment")
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import ab_aliases, ab_results, aliases, audit, ids, selection
from .documents import ab_test_info
from .errors import (
    AliasNotFoundError,
    InvalidArgumentError,
    InvalidStateError,
    ModelNotFoundError,
    NoModelLoadedError,
)
from .models import ABTest, AuditEvent, Model, utcnow
from .queries import ARMS, running_test
from .queries import require_test as _require_test
from .validation import ID_MAX_LENGTH, finite_real, validate_identifier, validate_mde

if TYPE_CHECKING:
    from .context import RegistryContext

logger = logging.getLogger(__name__)

RUNNING_INDEX = "uq_ab_tests_one_running"
SELECTED_BY = "ab_test"

__all__ = [
    "get_ab_test",
    "get_model_for_user",
    "list_ab_tests",
    "rollback_ab_test",
    "route_user",
    "running_test",
    "serving_model_id",
    "start_ab_test",
    "stop_ab_test",
    "update_traffic_split",
    "user_bucket",
]


# --------------------------------------------------------------------------- routing (pure)


def user_bucket(user_id: Any) -> int:
    """The user's bucket in ``0..99``: md5 of ``str(user_id)`` modulo 100 (the doc's hash)."""
    return int(hashlib.md5(str(user_id).encode()).hexdigest(), 16) % 100


def get_model_for_user(user_id: Any, ab_config: Mapping[str, Any]) -> str:
    """Route a user to the control or treatment model (the doc's function).

    The md5 of ``str(user_id)`` modulo 100 is compared with ``traffic_split * 100``:
    below goes to the treatment. A test that is not running routes everyone to
    control. The assignment depends only on the user id and the split, so a user
    keeps their arm while the split is unchanged, and growing the split only moves
    users from control to treatment.

    Args:
        user_id: any value; ``42`` and ``"42"`` land in the same bucket.
        ab_config: the ``ab_test`` dict (``status``, ``traffic_split``,
            ``control_model``, ``treatment_model``), e.g. from ``registry.json``.

    Returns:
        The model id serving this user.
    """
    if ab_config["status"] != "running":
        return ab_config["control_model"]
    # Verbatim float comparison, quirks included (0.07 * 100 == 7.000000000000001):
    # every service that routes with the doc's function must agree with us per user.
    if user_bucket(user_id) < ab_config["traffic_split"] * 100:
        return ab_config["treatment_model"]
    return ab_config["control_model"]


def serving_model_id(user_id: Any, ab_config: Mapping[str, Any] | None, current_best: str | None) -> str | None:
    """Which model serves ``user_id``: the one routing decision every entry point delegates to.

    :meth:`ModelRegistry.route_user <registry.cf_registry.ModelRegistry.route_user>` (through
    :func:`route_user`) applies it to the registry as it is now; the loader
    (``ModelLoader.route_for_user``, ``state_for_user``, ``load_for_user``) and the HTTP
    service apply it to the loader's routing table.

    Args:
        user_id: any value (``42`` and ``"42"`` route alike).
        ab_config: the running test as the doc's ``ab_test`` dict, or None when no test runs.
        current_best: the model serving everyone when no test runs.

    Returns:
        The user's arm (the doc's :func:`get_model_for_user`) while a test runs, else
        ``current_best`` (None: nothing to serve).
    """
    if ab_config is None:
        return current_best
    return get_model_for_user(user_id, ab_config)


# --------------------------------------------------------------------------- session helpers


def _running_test_info(context: RegistryContext) -> dict[str, Any] | None:
    """The running test as the doc's ``ab_test`` dict, or None when no test runs."""
    def work(session: Session) -> dict[str, Any] | None:
        test = running_test(session)
        return None if test is None else ab_test_info(test)

    return context.read(work)


def validate_traffic_split(value: object) -> float:
    """A finite real number in ``[0, 1]`` (numpy scalars accepted) as a float."""
    number = finite_real(value)
    if number is None:
        raise InvalidArgumentError(f"traffic_split must be a number between 0 and 1 (the treatment's share), got {value!r}")
    if not 0.0 <= number <= 1.0:
        raise InvalidArgumentError(f"traffic_split must be between 0 and 1 (e.g. 0.1 for 10% treatment), got {value!r}")
    return number


def _validate_promote(promote: object) -> str | None:
    if promote is not None and promote not in ARMS:
        raise InvalidArgumentError(f"promote must be None, 'control' or 'treatment', got {promote!r}")
    return promote


def _require_active_model(session: Session, model_id: str, role: str) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise ModelNotFoundError(f"{role} model {model_id!r} not found in registry",
                                 hint="list_models() shows the registered ids", cli_hint="`cfreg list` shows the registered ids")
    if model.status != "active":
        raise InvalidStateError(f"{role} model {model_id!r} is {model.status}; only active models can take part in an A/B test")
    return model


def _resolve_arm(session: Session, arm: str, alias: str | None, role: str) -> str:
    """The model id an arm serves: the model itself, or the current target of its alias."""
    if alias is None:
        return arm
    target = aliases.target_of(session, alias)
    if target is None:
        raise AliasNotFoundError(f"{role} alias {alias!r} is not set", hint="set it with set_alias() first",
                                 cli_hint="set it with `cfreg alias set` first")
    return target


def _arm_text(model_id: str, alias: str | None) -> str:
    return model_id if alias is None else f"@{alias}({model_id})"


def _default_test_id(session: Session, treatment_model: str, now: datetime) -> str:
    suffix = now.strftime("_%Y_%m_%d")
    room = ID_MAX_LENGTH - len("ab_") - len(suffix) - len("_999")  # keep the id a valid identifier
    return ids.first_free(session, ABTest.test_id, f"ab_{treatment_model[:room]}{suffix}")[0]


def _make_current(session: Session, test: ABTest, arm: str, evidence: dict[str, Any] | None = None) -> bool:
    """Make ``arm``'s model the current best (``selected_by='ab_test'``); False if it already is."""
    model_id = test.control_model if arm == "control" else test.treatment_model
    settings = selection.settings_row(session)
    if settings.current_model_id == model_id:
        return False
    model = _require_active_model(session, model_id, arm)
    metric = settings.selection_criteria
    value = selection.metric_value(session, model_id, metric)
    previous = settings.current_model_id
    selection.set_current(session, model.model_id, metric, value, SELECTED_BY, f"A/B test {test.test_id}: {arm}")
    details: dict[str, Any] = {"test_id": test.test_id, "arm": arm, "previous_model_id": previous, "metric": metric, "value": value}
    if evidence is not None:
        details["result"] = evidence
    audit.record(session, "AB_PROMOTE", model_id, f"test={test.test_id} arm={arm} from={previous or 'none'}", details)
    return True


# --------------------------------------------------------------------------- operations


def start_ab_test(
    context: RegistryContext,
    control_model: str,
    treatment_model: str,
    traffic_split: float,
    test_id: str | None = None,
    *,
    minimum_detectable_effect: float | None = None,
) -> dict[str, Any]:
    """Start an A/B test; returns it as the doc's ``ab_test`` dict.

    An arm written ``@NAME`` follows alias ``NAME`` (``"@champion_als"``, ``"@current_best"``):
    it serves the alias's target, and when the alias moves while the test runs the arm
    moves with it (see :mod:`registry.ab_aliases`).

    Args:
        context: the opened registry.
        control_model: model id (or ``@alias``) serving users outside the treatment share.
        treatment_model: model id (or ``@alias``) under test.
        traffic_split: the treatment's share of users, in ``[0, 1]``.
        test_id: explicit id; default ``ab_<treatment>_<YYYY_MM_DD>`` (UTC),
            suffixed ``_2``, ``_3``... when taken.
        minimum_detectable_effect: the smallest relative lift worth detecting
            (0.05 = +5%, the default when None); sizes the test in
            :func:`registry.ab_results.ab_test_results`.

    Raises:
        InvalidArgumentError: bad ids or split, the same model twice, a taken ``test_id``.
        ModelNotFoundError: a model is not registered (AliasNotFoundError: an alias is not set).
        ModelInUseError: a model is not active, or another test is running.
    """
    control_alias = ab_aliases.arm_alias(control_model, "control")
    treatment_alias = ab_aliases.arm_alias(treatment_model, "treatment")
    if control_alias is None:
        validate_identifier(control_model, "control_model")
    if treatment_alias is None:
        validate_identifier(treatment_model, "treatment_model")
    if control_model == treatment_model:
        raise InvalidArgumentError(f"control and treatment are both {control_model!r}; an A/B test needs two different models")
    split = validate_traffic_split(traffic_split)
    if test_id is not None:
        validate_identifier(test_id, "test_id")
    if minimum_detectable_effect is not None:
        minimum_detectable_effect = validate_mde(minimum_detectable_effect)

    def work(session: Session) -> dict[str, Any]:
        control_id = _resolve_arm(session, control_model, control_alias, "control")
        treatment_id = _resolve_arm(session, treatment_model, treatment_alias, "treatment")
        if control_id == treatment_id:
            raise InvalidArgumentError(
                f"control {control_model} and treatment {treatment_model} are both {control_id!r}; "
                "an A/B test needs two different models"
            )
        _require_active_model(session, control_id, "control")
        _require_active_model(session, treatment_id, "treatment")
        running = running_test(session)
        if running is not None:
            raise InvalidStateError(
                f"A/B test {running.test_id!r} is already running ({running.control_model} vs "
                f"{running.treatment_model})",
                hint=f"stop it with stop_ab_test({running.test_id!r}) first",
                cli_hint=f"stop it with `cfreg ab stop {running.test_id}` first",
            )
        now = utcnow()
        if test_id is not None and session.get(ABTest, test_id) is not None:
            raise InvalidArgumentError(f"A/B test id {test_id!r} is already used; choose another id or omit it")
        new_id = test_id or _default_test_id(session, treatment_id, now)
        test = ABTest(
            test_id=new_id, control_model=control_id, treatment_model=treatment_id,
            traffic_split=split, status="running", start_time=now,
            minimum_detectable_effect=minimum_detectable_effect,
            control_alias=control_alias, treatment_alias=treatment_alias,
        )
        session.add(test)
        try:
            session.flush()
        except IntegrityError as exc:
            # Only reachable if a concurrent writer slipped past the serialised check above.
            if RUNNING_INDEX in str(exc.orig) or "ab_tests.status" in str(exc.orig):
                raise InvalidStateError(
                    f"another A/B test started concurrently; cannot start {new_id!r} ({RUNNING_INDEX}): "
                    "stop the running test first"
                ) from exc
            raise InvalidArgumentError(f"could not start A/B test {new_id!r}: {exc.orig}") from exc
        details: dict[str, Any] = {"control_model": control_id, "treatment_model": treatment_id, "traffic_split": split,
                                   "minimum_detectable_effect": minimum_detectable_effect}
        if control_alias or treatment_alias:
            details.update(control_alias=control_alias, treatment_alias=treatment_alias)
        audit.record(
            session, "AB_START", new_id,
            f"control={_arm_text(control_id, control_alias)} treatment={_arm_text(treatment_id, treatment_alias)} "
            f"traffic_split={split:g}",
            details,
        )
        return ab_test_info(test)

    return context.mutate(work)


def get_ab_test(context: RegistryContext, test_id: str | None = None) -> dict[str, Any] | None:
    """A test as the doc's ``ab_test`` dict: the running one by default (None when none runs).

    Raises:
        ModelNotFoundError: an explicit ``test_id`` is unknown.
    """
    if test_id is None:
        return _running_test_info(context)
    validate_identifier(test_id, "test_id")
    return context.read(lambda session: ab_test_info(_require_test(session, test_id)))


def list_ab_tests(context: RegistryContext) -> list[dict[str, Any]]:
    """Every test, newest first, as ``ab_test`` dicts (stopped ones carry ``end_time``)."""
    def work(session: Session) -> list[dict[str, Any]]:
        statement = select(ABTest).order_by(ABTest.start_time.desc(), ABTest.test_id.desc())
        return [ab_test_info(test) for test in session.scalars(statement)]

    return context.read(work)


def update_traffic_split(context: RegistryContext, test_id: str | None, traffic_split: float) -> dict[str, Any]:
    """Change the running test's treatment share (``test_id=None``: the running test).

    Growing the split only moves users from control to treatment; shrinking it
    only moves them back.

    Raises:
        InvalidArgumentError: bad split, or the test is stopped.
        ModelNotFoundError: unknown test (or none running).
    """
    if test_id is not None:
        validate_identifier(test_id, "test_id")
    split = validate_traffic_split(traffic_split)

    def work(session: Session) -> dict[str, Any]:
        test = _require_test(session, test_id)
        if test.status != "running":
            raise InvalidArgumentError(f"A/B test {test.test_id!r} is {test.status}; only a running test's split can change")
        if test.traffic_split != split:
            previous, test.traffic_split = test.traffic_split, split
            audit.record(session, "AB_SPLIT", test.test_id, f"traffic_split={previous:g}->{split:g}",
                         {"previous_traffic_split": previous, "traffic_split": split})
        return ab_test_info(test)

    return context.mutate(work)


def stop_ab_test(
    context: RegistryContext,
    test_id: str | None = None,
    promote: Literal["control", "treatment"] | None = None,
    *,
    promote_winner: bool = False,
) -> dict[str, Any]:
    """Stop a test: from then on everyone is routed to the control (or the current best).

    Args:
        context: the opened registry.
        test_id: the test to stop (None: the running one).
        promote: ``'control'`` or ``'treatment'`` makes that arm's model the current
            best in the same transaction (``selections`` row ``selected_by='ab_test'``).
        promote_winner: promote the arm that :func:`registry.ab_results.ab_test_results`
            declares the winner (default analysis), in the same transaction; the
            result is kept in the ``AB_STOP`` and ``AB_PROMOTE`` audit details.
            Without a winner nothing changes and InvalidArgumentError names the verdict.

    Returns:
        The stopped test (``status='stopped'``, ``end_time``, ``promoted`` when set).
        Stopping an already stopped test without ``promote`` changes nothing.

    Raises:
        InvalidArgumentError: bad ``promote``, or promoting from an already stopped test.
        ModelNotFoundError: unknown test (or none running).
    """
    if test_id is not None:
        validate_identifier(test_id, "test_id")
    chosen = _validate_promote(promote)
    if not isinstance(promote_winner, bool):
        raise InvalidArgumentError(f"promote_winner must be True or False, got {promote_winner!r}")
    if promote_winner and chosen is not None:
        raise InvalidArgumentError("pass promote or promote_winner, not both")

    def work(session: Session) -> dict[str, Any]:
        test = _require_test(session, test_id)
        arm, evidence = chosen, None
        if promote_winner and test.status == "running":
            arm, evidence = ab_results.winner(session, test)
        if test.status != "running":
            if arm is not None or promote_winner:
                raise InvalidArgumentError(
                    f"A/B test {test.test_id!r} is already stopped",
                    hint="use promote_model() to change the current best",
                    cli_hint="use `cfreg promote MODEL_ID` to change the current best",
                )
            return ab_test_info(test)
        test.status, test.end_time = "stopped", utcnow()
        details = {"control_model": test.control_model, "treatment_model": test.treatment_model,
                   "traffic_split": test.traffic_split, "promote": arm}
        if evidence is not None:
            details["result"] = evidence
        summary = f"traffic_split={test.traffic_split:g} promote={arm or 'none'}"
        if evidence is not None:
            summary += f" verdict={evidence['verdict']!r} p={evidence['p_value']:.3g}"
        audit.record(session, "AB_STOP", test.test_id, summary, details)
        if arm is not None:
            test.promoted = arm
            _make_current(session, test, arm, evidence)
        return ab_test_info(test)

    return context.mutate(work)


def rollback_ab_test(context: RegistryContext, test_id: str | None = None) -> dict[str, Any]:
    """The doc's rollback steps as one transaction: split to 0, stop, current best back to control.

    Works on a running test (split to 0, stop, control made the current best if it
    is not), and on a stopped test whose treatment was promoted and is still the
    current best (the control becomes the current best again; the test keeps its
    recorded split and ``promoted`` becomes ``'control'``). Audited as
    ``AB_ROLLBACK`` (plus ``AB_PROMOTE`` when the current best changes). Rolling
    back a test that was already rolled back changes nothing and returns it.

    Raises:
        ModelNotFoundError: unknown test (or none running).
        InvalidArgumentError: a stopped test whose treatment was not promoted, or is
            no longer the current best (nothing is changed).
        ModelInUseError: the control model is no longer active.
    """
    if test_id is not None:
        validate_identifier(test_id, "test_id")

    def work(session: Session) -> dict[str, Any]:
        test = _require_test(session, test_id)
        previous_split, previous_status = test.traffic_split, test.status
        if test.status == "running":
            test.traffic_split, test.status, test.end_time = 0.0, "stopped", utcnow()
        elif _rolled_back(session, test):
            return ab_test_info(test)  # already rolled back: nothing to record
        else:
            current = selection.settings_row(session).current_model_id
            if test.promoted != "treatment" or current != test.treatment_model:
                why = ("its treatment was never promoted" if test.promoted != "treatment"
                       else f"the current best is now {current or 'unset'}, not its treatment {test.treatment_model}")
                raise InvalidArgumentError(
                    f"A/B test {test.test_id!r} is stopped and {why}; rollback_ab_test only undoes a running test "
                    "or a promoted treatment that is still the current best",
                    hint="change the current best with promote_model() or rollback() instead",
                    cli_hint="change the current best with `cfreg promote MODEL_ID` or `cfreg rollback` instead",
                )
        restored = _make_current(session, test, "control")
        if restored:
            test.promoted = "control"
        audit.record(
            session, "AB_ROLLBACK", test.test_id,
            f"traffic_split={previous_split:g}->{test.traffic_split:g} current_best={test.control_model}",
            {"previous_traffic_split": previous_split, "previous_status": previous_status,
             "control_model": test.control_model, "treatment_model": test.treatment_model,
             "current_best_restored": restored},
        )
        return ab_test_info(test)

    return context.mutate(work)


def _rolled_back(session: Session, test: ABTest) -> bool:
    """True when ``test`` was already rolled back (it has an ``AB_ROLLBACK`` audit row)."""
    statement = select(AuditEvent.id).where(AuditEvent.action == "AB_ROLLBACK", AuditEvent.target == test.test_id)
    return session.scalars(statement.limit(1)).first() is not None


def route_user(context: RegistryContext, user_id: Any) -> str:
    """The model id serving ``user_id``: the running test's arm, else the current best.

    Raises:
        NoModelLoadedError: no test runs and no current best is set.
    """
    def work(session: Session) -> tuple[dict[str, Any] | None, str | None]:
        test = running_test(session)
        current = selection.current_model_id(session)
        return (None if test is None else ab_test_info(test)), current

    config, current = context.read(work)
    model_id = serving_model_id(user_id, config, current)
    if model_id is None:
        raise NoModelLoadedError("no A/B test is running and no current best is set",
                                 hint="run select_best_model() or promote_model()",
                                 cli_hint="run `cfreg select-best` or `cfreg promote MODEL_ID`")
    return model_id
