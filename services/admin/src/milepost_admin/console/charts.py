"""A tiny inline-SVG line chart for the dashboard: no script, no network.

The SVG scales to the width of its box (``viewBox``, ``width: 100%`` in the stylesheet);
its proportions are those of a chart across the page, so text stays about 12 px there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 1200, 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 78, 16, 14, 50
TICKS_X = 7
FONT = 'font-size="12" fill="#5b6475"'


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


def _tick_indexes(count: int) -> list[int]:
    if count <= 1:
        return [0] if count else []
    step = max(1, round((count - 1) / (TICKS_X - 1)))
    indexes = list(range(0, count, step))
    if count - 1 - indexes[-1] >= step / 2:
        indexes.append(count - 1)
    else:
        indexes[-1] = count - 1
    return indexes


def line_chart(title: str, times: Sequence[datetime], series: Series) -> str:
    """An accessible SVG (role=img, a title and a text summary) of one series over time,
    both axes labelled (the series and its unit; the time in UTC)."""
    known = [v for v in series.values if v is not None]
    top = _nice_max(max(known, default=0.0))
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
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
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(top * f):.1f}" '
        f'y2="{y(top * f):.1f}" stroke="#e3e7ee"/><text x="{PAD_LEFT - 8}" '
        f'y="{y(top * f) + 4:.1f}" text-anchor="end" {FONT}>{top * f:g}</text>'
        for f in (0, 0.25, 0.5, 0.75, 1)
    )
    ticks = "".join(
        f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{PAD_TOP + plot_h}" '
        f'y2="{PAD_TOP + plot_h + 4}" stroke="#9aa3b2"/>'
        f'<text x="{x(i):.1f}" y="{PAD_TOP + plot_h + 18}" text-anchor="middle" {FONT}>'
        f"{times[i].strftime('%H:%M')}</text>"
        for i in _tick_indexes(len(times))
    )
    mid_y = PAD_TOP + plot_h / 2
    axes = (
        f'<line x1="{PAD_LEFT}" x2="{PAD_LEFT}" y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}" '
        f'stroke="#9aa3b2"/>'
        f'<text class="axis-label" x="{PAD_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle" {FONT}>Time (UTC)</text>'
        f'<text class="axis-label" x="16" y="{mid_y:.1f}" text-anchor="middle" {FONT} '
        f'transform="rotate(-90 16 {mid_y:.1f})">{escape(series.label)} ({escape(series.unit)})'
        f"</text>"
    )
    latest = known[-1] if known else None
    summary = (
        f"{series.label}: latest {latest:g} {series.unit}, peak {max(known):g} {series.unit}"
        if latest is not None
        else f"{series.label}: no data in this period"
    )
    return (
        f"<figcaption>{escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>"
        f"{grid}{axes}{ticks}{lines}</svg>"
        f'<p class="muted">{escape(summary)}</p>'
    )
