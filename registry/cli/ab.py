"""``cfreg ab``: A/B tests (canary rollouts) between two models."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from .common import CliState, emit, mapping_table, records_table, state_of

app = typer.Typer(help="A/B tests (canary rollouts) between two models.", no_args_is_help=True)

RunningTestId = Annotated[str | None, typer.Argument(help="Test id (default: the running test).")]


class Arm(str, Enum):
    """The two sides of an A/B test."""

    control = "control"
    treatment = "treatment"


def _render_test(state: CliState, test: dict[str, Any] | None) -> None:
    state.out.print(mapping_table(test, title="A/B test") if test else "No running A/B test.")


@app.command("start")
def start(
    ctx: typer.Context,
    control_model: Annotated[str, typer.Argument(help="Model serving most users.")],
    treatment_model: Annotated[str, typer.Argument(help="Model under test.")],
    split: Annotated[float, typer.Option("--split", min=0.0, max=1.0, help="Share of users routed to the treatment (0.1 = 10%).")] = 0.1,
    test_id: Annotated[str | None, typer.Option(help="Test id (default: ab_<treatment>_<date>).")] = None,
) -> None:
    """Start an A/B test.

    Example: cfreg ab start als_v1 als_v2 --split 0.1
    """
    state = state_of(ctx)
    result = state.registry().start_ab_test(control_model, treatment_model, split, test_id=test_id)
    emit(state, result, lambda: state.out.print(
        f"Started A/B test {result['test_id']}: {result['treatment_model']} gets {result['traffic_split']:.0%} "
        f"of users, {result['control_model']} the rest"
    ))


@app.command("status")
def status(
    ctx: typer.Context,
    test_id: RunningTestId = None,
    all_tests: Annotated[bool, typer.Option("--all", help="List every test.")] = False,
) -> None:
    """Show the running A/B test (or one test, or all).

    Example: cfreg ab status --all
    """
    state = state_of(ctx)
    registry = state.registry()
    if all_tests:
        tests = registry.list_ab_tests()
        emit(state, tests, lambda: state.out.print(records_table(tests, title="A/B tests") if tests else "No A/B tests."))
        return
    test = registry.get_ab_test(test_id)
    emit(state, test, lambda: _render_test(state, test))


@app.command("split")
def split(
    ctx: typer.Context,
    traffic_split: Annotated[float, typer.Argument(min=0.0, max=1.0, help="New treatment share.")],
    test_id: Annotated[str | None, typer.Option(help="Test id (default: the running test).")] = None,
) -> None:
    """Change a running test's traffic split.

    Example: cfreg ab split 0.5
    """
    state = state_of(ctx)
    result = state.registry().update_traffic_split(test_id, traffic_split)
    emit(state, result, lambda: state.out.print(f"{result['test_id']}: traffic split {result['traffic_split']:g}"))


@app.command("stop")
def stop(
    ctx: typer.Context,
    test_id: RunningTestId = None,
    promote: Annotated[Arm | None, typer.Option(help="Make this arm's model the current best.")] = None,
) -> None:
    """Stop a test (everyone goes to control); optionally promote an arm.

    Example: cfreg ab stop --promote treatment
    """
    state = state_of(ctx)
    result = state.registry().stop_ab_test(test_id, promote=promote.value if promote else None)
    emit(state, result, lambda: state.out.print(
        f"Stopped {result['test_id']}" + (f", promoted the {promote.value}" if promote else "")
    ))


@app.command("rollback")
def rollback(ctx: typer.Context, test_id: RunningTestId = None) -> None:
    """Roll a test back: a running one goes to split 0 and stops; the control becomes the current best again.

    Example: cfreg ab rollback ab_als_v2_2025_01_16
    """
    state = state_of(ctx)
    result = state.registry().rollback_ab_test(test_id)
    emit(state, result, lambda: state.out.print(
        f"Rolled back {result['test_id']}: current best is {result['control_model']}"
    ))
