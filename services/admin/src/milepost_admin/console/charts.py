"""A tiny inline-SVG line chart for the dashboard: no script, no network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 160, 56, 22, 12


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    unit: str
    color: str
    values: Sequence[float | None]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def line_chart(title: str, times: Sequence[datetime], series: Series) -> str:
    """An accessible SVG (role=img, a title and a text summary) of one series over time."""
    known = [v for v in series.values if v is not None]
    top = _nice_max(max(known, default=0.0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    count = max(len(series.values) - 1, 1)

    def x(i: int) -> float:
        return PAD_LEFT + plot_w * i / count

    def y(v: float) -> float:
        return PAD_TOP + plot_h * (1 - v / top)

    segments: list[list[str]] = [[]]
    for i, value in enumerate(series.values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="{series.color}" stroke-width="2" points="{" ".join(s)}"/>'
        for s in segments
        if s
    )
    grid = "".join(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y(top * f):.1f}" y2="{y(top * f):.1f}" '
        f'stroke="#e3e7ee"/><text x="{PAD_LEFT - 6}" y="{y(top * f) + 4:.1f}" '
        f'text-anchor="end" font-size="11" fill="#5b6475">{top * f:g}</text>'
        for f in (0, 0.5, 1)
    )
    labels = ""
    if times:
        for i in (0, len(times) // 2, len(times) - 1):
            labels += (
                f'<text x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11" '
                f'fill="#5b6475">{times[i].strftime("%H:%M")}</text>'
            )
    latest = known[-1] if known else None
    summary = (
        f"{series.label}: latest {latest:g} {series.unit}, peak {max(known):g} {series.unit}"
        if latest is not None
        else f"{series.label}: no data in this period"
    )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>"
        f"{grid}{lines}{labels}</svg>"
        f'<p class="muted">{escape(summary)}</p>'
    )
