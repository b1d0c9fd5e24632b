"""``cfreg ab``: A/B tests (canary rollouts) between two models."""

from enum import Enum
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import CliState, cell, emit, mapping_table, records_table, state_of

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
    control_model: Annotated[str, typer.Argument(help="Model serving most users, or @ALIAS to follow an alias.")],
    treatment_model: Annotated[str, typer.Argument(help="Model under test, or @ALIAS to follow an alias.")],
    split: Annotated[float, typer.Option("--split", min=0.0, max=1.0, help="Share of users routed to the treatment (0.1 = 10%).")] = 0.1,
    test_id: Annotated[str | None, typer.Option(help="Test id (default: ab_<treatment>_<date>).")] = None,
    min_detectable_effect: Annotated[float | None, typer.Option(help="Smallest relative lift worth detecting (0.05 = +5%, the default); sizes the test.")] = None,
) -> None:
    """Start an A/B test. An arm written @NAME follows alias NAME: moving the alias switches the arm.

    Example: cfreg ab start als_v1 als_v2 --split 0.1
    Example: cfreg ab start @champion_als @challenger --split 0.2
    """
    state = state_of(ctx)
    result = state.registry().start_ab_test(control_model, treatment_model, split, test_id=test_id,
                                            minimum_detectable_effect=min_detectable_effect)
    emit(state, result, lambda: state.out.print(
        f"Started A/B test {result['test_id']}: {arm_text(result, 'treatment')} gets {result['traffic_split']:.0%} "
        f"of users, {arm_text(result, 'control')} the rest"
    ))


def arm_text(test: dict[str, Any], arm: str) -> str:
    """An arm's model, with the alias it follows when it has one: ``als_v2 (@challenger)``."""
    alias = test.get(f"{arm}_alias")
    return f"{test[f'{arm}_model']} (@{alias})" if alias else test[f"{arm}_model"]


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
    promote_winner: Annotated[bool, typer.Option("--promote-winner", help="Promote the arm `cfreg ab results` declares the winner; refuses (and changes nothing) without one.")] = False,
) -> None:
    """Stop a test (everyone goes to control); optionally promote an arm, or the winner.

    Example: cfreg ab stop --promote-winner
    """
    state = state_of(ctx)
    result = state.registry().stop_ab_test(test_id, promote=promote.value if promote else None,
                                           promote_winner=promote_winner)
    promoted = result.get("promoted") if (promote or promote_winner) else None
    emit(state, result, lambda: state.out.print(
        f"Stopped {result['test_id']}" + (f", promoted the {promoted}" if promoted else "")
    ))


class OutcomeMetric(str, Enum):
    """What an A/B analysis compares."""

    conversion = "conversion"
    value = "value"


class ResultMethod(str, Enum):
    """How an A/B analysis stays valid under daily looks."""

    fixed_horizon = "fixed_horizon"
    msprt = "msprt"


@app.command("record")
def record(
    ctx: typer.Context,
    test_id: Annotated[str, typer.Argument(help="The A/B test.")],
    arm: Annotated[Arm, typer.Argument(help="Which arm the batch belongs to.")],
    exposures: Annotated[int, typer.Option(min=0, help="Users (or sessions) exposed in this batch.")],
    batch_id: Annotated[str, typer.Option(help="The batch's id; a retry with the same id counts once.")],
    conversions: Annotated[int | None, typer.Option(min=0, help="How many converted (conversion metrics).")] = None,
    value_sum: Annotated[float | None, typer.Option(help="Sum of a per-exposure value (continuous metrics).")] = None,
    value_sum_squares: Annotated[float | None, typer.Option(help="Sum of the squares of that value.")] = None,
) -> None:
    """Record one batch of an arm's outcomes.

    Example: cfreg ab record ab_als_v2_2025_01_16 treatment --exposures 5000 --conversions 610 --batch-id 2025-01-17
    """
    state = state_of(ctx)
    result = state.registry().record_ab_outcomes(test_id, arm.value, exposures, conversions, batch_id=batch_id,
                                                 value_sum=value_sum, value_sum_squares=value_sum_squares)
    emit(state, result, lambda: state.out.print(
        f"{'Recorded' if result['recorded'] else 'Already recorded'} batch {batch_id} of the {arm.value} arm of {test_id}"
    ))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"


@app.command("results")
def results(
    ctx: typer.Context,
    test_id: RunningTestId = None,
    metric: Annotated[OutcomeMetric, typer.Option(help="conversion: rates; value: means of the summed values.")] = OutcomeMetric.conversion,
    method: Annotated[ResultMethod, typer.Option(help="fixed_horizon (verdict at the planned size) or msprt (always valid).")] = ResultMethod.fixed_horizon,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Interval level.")] = 0.95,
) -> None:
    """Which arm won: per arm exposures and rate, lift with its interval, p-value, sample still needed, verdict.

    Example: cfreg ab results ab_als_v2_2025_01_16
    """
    state = state_of(ctx)
    result = state.registry().ab_test_results(test_id, metric=metric.value, method=method.value, confidence=confidence)

    def render() -> None:
        key = "rate" if result["metric"] == "conversion" else "mean"
        level = f"{result['confidence']:.0%}"
        table = Table(title=f"A/B test {result['test_id']} ({result['status']}): {result['metric']}")
        for column in ("arm", "model", "exposures", key, "lift", f"{level} interval", "p-value"):
            table.add_column(column, justify="left" if column in ("arm", "model") else "right")
        for arm in result["arms"]:
            interval = (f"{_percent(arm['lift_ci_low'])} .. {_percent(arm['lift_ci_high'])}"
                        if arm.get("lift_ci_low") is not None else "-")
            p_value = arm.get("p_value")
            table.add_row(arm["arm"], arm["model_id"], f"{arm['exposures']:,}", cell(arm[key]),
                          _percent(arm.get("lift")) if arm["arm"] == "treatment" else "(control)", interval,
                          "-" if p_value is None else f"{p_value:.3g}")
        state.out.print(table)
        needed = result["exposures_needed"]
        state.out.print(f"Verdict: [bold]{result['verdict']}[/bold]" + (" (final)" if result["final"] else ""))
        if needed:
            state.out.print(f"Exposures still needed for a {result['minimum_detectable_effect']:.0%} lift: {needed:,}"
                            f" (planned {result['planned_exposures']:,})")
        state.out.print(f"Method: {result['method_name']}")

    emit(state, result, render)


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
