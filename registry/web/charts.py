"""Server-side SVG charts: a metric over time per model type, and a two-metric scatter.

Rendered on the server so they need no JavaScript and no third-party asset; every
point carries a ``<title>`` tooltip, the current best is ringed and labelled, and
colours come from the Okabe-Ito palette (distinguishable with colour blindness).
Only presentation attributes are used, so a strict Content-Security-Policy
(``style-src 'self'``) holds.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIDTH, HEIGHT = 760, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 20, 48
BEST_COLOUR = "#B8001F"

__all__ = ["colour_for", "nice_ticks", "scatter_chart", "time_chart"]


def colour_for(index: int) -> str:
    """The palette colour of series ``index``."""
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Maps data coordinates onto the plot area."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.plot_width = WIDTH - LEFT - RIGHT
        self.plot_height = HEIGHT - TOP - BOTTOM

    def x(self, value: float) -> float:
        span = self.x1 - self.x0
        return LEFT + (self.plot_width / 2 if span <= 0 else (value - self.x0) / span * self.plot_width)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0
        return TOP + self.plot_height - (self.plot_height / 2 if span <= 0 else (value - self.y0) / span * self.plot_height)


def _padded(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
    return low - pad, high + pad


def _axes(frame: _Frame, x_ticks: list[tuple[float, str]], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{frame.plot_width}" height="{frame.plot_height}" fill="#ffffff" stroke="#c9ced6"/>']
    for value in y_ticks:
        if frame.y0 <= value <= frame.y1:
            y = frame.y(value)
            parts.append(f'<line x1="{LEFT}" x2="{LEFT + frame.plot_width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff3"/>')
            parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#4a5361">{_fmt(value)}</text>')
    for value, label in x_ticks:
        if frame.x0 <= value <= frame.x1:
            x = frame.x(value)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + frame.plot_height}" stroke="#eceff3"/>')
            parts.append(f'<text x="{x:.1f}" y="{TOP + frame.plot_height + 18}" text-anchor="middle" font-size="11" fill="#4a5361">{escape(label)}</text>')
    parts.append(f'<text x="{LEFT + frame.plot_width / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12" fill="#1f2630">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {TOP + frame.plot_height / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1f2630">{escape(y_label)}</text>')
    return parts


def _legend(names: list[str], with_best: bool) -> list[str]:
    parts, x = [], WIDTH - RIGHT + 16
    for index, name in enumerate(names):
        y = TOP + 10 + index * 20
        parts.append(f'<circle cx="{x}" cy="{y}" r="5" fill="{colour_for(index)}"/>')
        parts.append(f'<text x="{x + 12}" y="{y + 4}" font-size="12" fill="#1f2630">{escape(name)}</text>')
    if with_best:
        y = TOP + 10 + len(names) * 20
        parts.append(f'<circle cx="{x}" cy="{y}" r="7" fill="none" stroke="{BEST_COLOUR}" stroke-width="2.5"/>')
        parts.append(f'<text x="{x + 12}" y="{y + 4}" font-size="12" fill="#1f2630">current best</text>')
    return parts


def _svg(parts: list[str], title: str, description: str) -> Markup:
    body = "".join(parts)
    ident = "chart-" + hashlib.sha1(title.encode()).hexdigest()[:8]  # unique per chart on a page
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" '
        f'aria-labelledby="{ident}-title {ident}-desc"><title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(description)}</desc>{body}</svg>'
    )


def _empty(title: str) -> Markup:
    return _svg([f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="14" fill="#4a5361">No data for this chart yet.</text>'],
                title, "empty chart")


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _time_ticks(low: float, high: float) -> list[tuple[float, str]]:
    span = high - low
    fmt = "%H:%M:%S" if span < 600 else "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
    count = 5
    return [(low + span * i / (count - 1), datetime.fromtimestamp(low + span * i / (count - 1), UTC).strftime(fmt))
            for i in range(count)] if span > 0 else [(low, datetime.fromtimestamp(low, UTC).strftime(fmt))]


def time_chart(points: list[dict[str, Any]], metric: str) -> Markup:
    """``metric`` over registration time, one coloured line per model type; the current best ringed.

    Args:
        points: dicts with ``model_id, model_type, created_at, value, is_current`` (oldest first).
    """
    title = f"{metric} over time by model type"
    if not points:
        return _empty(title)
    types = sorted({p["model_type"] for p in points})
    xs = [_timestamp(p["created_at"]) for p in points]
    x_range = (min(xs), max(xs))
    if x_range[0] == x_range[1]:
        x_range = (x_range[0] - 60, x_range[1] + 60)
    frame = _Frame(x_range, _padded([p["value"] for p in points]))
    parts = _axes(frame, _time_ticks(*x_range), nice_ticks(frame.y0, frame.y1, 6), "registered at (UTC)", metric)
    best_mark = []
    for index, model_type in enumerate(types):
        colour = colour_for(index)
        series = [(x, p) for x, p in zip(xs, points) if p["model_type"] == model_type]
        path = " ".join(f"{frame.x(x):.1f},{frame.y(p['value']):.1f}" for x, p in series)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-opacity="0.7"/>')
        for x, p in series:
            cx, cy = frame.x(x), frame.y(p["value"])
            tip = escape(f"{p['model_id']}: {metric}={_fmt(p['value'])} ({p['created_at']})")
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}"><title>{tip}</title></circle>')
            if p["is_current"]:
                best_mark.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="9" fill="none" stroke="{BEST_COLOUR}" stroke-width="2.5"/>'
                                 f'<text x="{cx:.1f}" y="{cy - 13:.1f}" text-anchor="middle" font-size="11" font-weight="bold" fill="{BEST_COLOUR}">best</text>')
    parts += best_mark + _legend(types, bool(best_mark))
    return _svg(parts, title, f"{len(points)} model versions; each point is a version, the ringed one the current best")


def scatter_chart(points: list[dict[str, Any]], x_metric: str, y_metric: str) -> Markup:
    """``y_metric`` against ``x_metric``, one colour per model type; the current best ringed.

    Args:
        points: dicts with ``model_id, model_type, x, y, is_current``.
    """
    title = f"{y_metric} vs {x_metric}"
    if not points:
        return _empty(title)
    types = sorted({p["model_type"] for p in points})
    frame = _Frame(_padded([p["x"] for p in points]), _padded([p["y"] for p in points]))
    x_ticks = [(value, _fmt(value)) for value in nice_ticks(frame.x0, frame.x1)]
    parts = _axes(frame, x_ticks, nice_ticks(frame.y0, frame.y1, 6), x_metric, y_metric)
    best_mark = []
    for index, model_type in enumerate(types):
        colour = colour_for(index)
        for p in (p for p in points if p["model_type"] == model_type):
            cx, cy = frame.x(p["x"]), frame.y(p["y"])
            tip = escape(f"{p['model_id']}: {x_metric}={_fmt(p['x'])}, {y_metric}={_fmt(p['y'])}")
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}" fill-opacity="0.8"><title>{tip}</title></circle>')
            if p["is_current"]:
                best_mark.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" stroke="{BEST_COLOUR}" stroke-width="2.5"/>'
                                 f'<text x="{cx:.1f}" y="{cy - 14:.1f}" text-anchor="middle" font-size="11" font-weight="bold" fill="{BEST_COLOUR}">best</text>')
    parts += best_mark + _legend(types, bool(best_mark))
    return _svg(parts, title, f"{len(points)} models with both metrics")
