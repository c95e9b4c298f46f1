"""Charts as inline SVG: bars per class and lines over steps, with axes a reader can trust.

Why hand-written SVG and not an embedded chart library: the page must open anywhere without a
network (a bucket, an email, an air-gapped cluster), stay a few hundred KB with 1,000 classes
and render the same in every browser and in a screenshot. The charts needed are two shapes
(bars, lines) with log or linear axes, a threshold line and markers; a library would add
100-300 KB of pinned JavaScript and a second way for the page to break, for no chart we need.
Every mark carries its numbers in a ``<title>`` (a tooltip, and what a screen reader says),
and the page puts the full numbers in a table beside each chart. The marks are named tuples,
not dataclasses: a tenth of the import time, for a module imported when a page is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import NamedTuple

WIDTH = 960
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
TITLED_BARS = 200
"""Up to this many bars, each is its own element with a tooltip; above, all bars are one path
(1,000 classes: 15 KB rather than 100 KB), and the table holds the numbers."""


def number(value: float | int | None, digits: int = 4) -> str:
    """A figure as the page shows it: integers grouped, others to ``digits`` significant."""
    if value is None:
        return "\u2013"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "\u2013" if math.isnan(value) else ("\u221e" if value > 0 else "-\u221e")
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


class Axis(NamedTuple):
    """A value axis: linear from 0, or logarithmic, mapped onto pixels [low, high]."""

    top: float
    log: bool
    bottom: float = 0.0
    pixels: tuple[float, float] = (0.0, 1.0)
    """(pixel of ``bottom``, pixel of ``top``)."""

    def __call__(self, value: float) -> float:
        low, high = self.pixels
        if self.log:
            value = max(value, self.bottom)
            span = math.log10(self.top) - math.log10(self.bottom)
            share = (math.log10(value) - math.log10(self.bottom)) / span if span else 0.0
        else:
            span = self.top - self.bottom
            share = (value - self.bottom) / span if span else 0.0
        return low + (high - low) * share

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.floor(math.log10(self.bottom)), math.ceil(math.log10(self.top))
            return [10.0**e for e in range(first, last + 1) if self.bottom <= 10.0**e <= self.top]
        step = _nice_step(self.top - self.bottom)
        count = int((self.top - self.bottom) / step + 1e-9)
        return [self.bottom + i * step for i in range(count + 1)]


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power


def value_axis(values: Sequence[float], *, log: bool, top: float | None = None) -> Axis:
    """An axis that holds ``values`` (and ``top``); log axes start at a power of ten."""
    high = max([v for v in values if v > 0] + ([top] if top else []), default=1.0)
    if log:
        low = min([v for v in values if v > 0], default=1.0)
        # a decade below the smallest value when it sits near a power of ten, so its bar
        # (or point) is not drawn flat on the axis; counts never go below 1
        bottom = 10.0 ** math.floor(math.log10(low / 3))
        bottom = max(bottom, 1.0) if low >= 1 else bottom
        ceiling = 10.0 ** math.ceil(math.log10(high * 1.0001))
        return Axis(ceiling, True, bottom)
    step = _nice_step(high)
    return Axis(math.ceil(high / step - 1e-9) * step or 1.0, False)


class Frame(NamedTuple):
    """What every chart has: its name (``data-chart``), its summary in words (its title and
    ``aria-label``), the value axis and its label, a threshold line, and its height."""

    chart: str
    summary: str
    axis: Axis
    y_label: str
    threshold: float | None = None
    threshold_label: str = ""
    height: int = 280


def _open(frame: Frame) -> tuple[str, Axis]:
    """The opening tag, the y axis' grid and labels; returns them and the pixel-mapped axis."""
    height, axis, label, chart, summary = (
        frame.height,
        frame.axis,
        frame.y_label,
        frame.chart,
        frame.summary,
    )
    plot_bottom, plot_top = height - BOTTOM, TOP
    mapped = Axis(axis.top, axis.log, axis.bottom, (plot_bottom, plot_top))
    parts = [
        f'<svg class="chart" data-chart="{chart}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    for tick in axis.ticks():
        y = mapped(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(tick, 3))}</text>"
        )
    parts.append(
        f'<text class="axis-label" transform="translate(14 {(plot_top + plot_bottom) / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{escape(label)}</text>'
    )
    return "".join(parts), mapped


def _close(frame: Frame, mapped: Axis, x_label: str) -> str:
    """The threshold line (over the marks), the x axis' title and the closing tag."""
    return (
        _threshold(mapped, frame.threshold, frame.threshold_label)
        + f'<text class="axis-label" x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.0f}" '
        f'y="{frame.height - 4}" text-anchor="middle">{escape(x_label)}</text></svg>'
    )


def _threshold(axis: Axis, threshold: float | None, label: str) -> str:
    if threshold is None or not (axis.bottom <= threshold <= axis.top or not axis.log):
        return ""
    y = axis(threshold)
    return (
        f'<line class="threshold" data-threshold="{threshold:g}" x1="{LEFT}" '
        f'x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"><title>{escape(label)}</title></line>'
        f'<text class="threshold-label" x="{WIDTH - RIGHT - 4}" y="{y - 5:.1f}" '
        f'text-anchor="end">{escape(label)}</text>'
    )


class Bar(NamedTuple):
    """One bar: its class, height and tooltip, and a style (``largest``, ``above``...)."""

    key: str
    value: float
    tooltip: str
    style: str = ""


def bar_chart(
    bars: Sequence[Bar],
    frame: Frame,
    *,
    x_label: str,
    annotate: Sequence[tuple[int, str]] = (),
) -> str:
    """Bars in class order; ``annotate`` writes a label above the bars at those positions."""
    head, mapped = _open(frame)
    axis, height = frame.axis, frame.height
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / max(1, len(bars))
    gap = slot * 0.2 if len(bars) <= 60 else 0.0
    base = mapped(axis.bottom)
    parts = [head]
    plain: list[str] = []
    for index, bar in enumerate(bars):
        x = LEFT + index * slot + gap / 2
        # a bar at the log axis' floor (a count of 1 on an axis from 1) still shows
        y = min(mapped(bar.value), base - 1.5) if bar.value > 0 else base
        w = max(slot - gap, 0.6)
        if len(bars) <= TITLED_BARS or bar.style:
            parts.append(
                f'<rect class="bar {bar.style}" data-key="{escape(bar.key)}" '
                f'data-value="{bar.value:g}" x="{x:.2f}" y="{y:.1f}" width="{w:.2f}" '
                f'height="{max(base - y, 0):.1f}"><title>{escape(bar.tooltip)}</title></rect>'
            )
        elif bar.value > 0:
            plain.append(f"M{x:.1f} {base:.0f}V{y:.1f}h{w:.2f}V{base:.0f}z")
    if plain:
        parts.insert(1, f'<path class="bar" data-bars="{len(plain)}" d="{"".join(plain)}"/>')
    for index, text in annotate:
        bar = bars[index]
        x = LEFT + (index + 0.5) * slot
        y = (mapped(bar.value) if bar.value > 0 else base) - 6
        anchor = "start" if index < len(bars) / 2 else "end"
        parts.append(
            f'<text class="annotation" x="{x:.1f}" y="{max(y, TOP + 10):.1f}" '
            f'text-anchor="{anchor if len(bars) > 12 else "middle"}">{escape(text)}</text>'
        )
    parts.append(_x_labels([bar.key for bar in bars], slot, height))
    parts.append(_close(frame, mapped, x_label))
    return "".join(parts)


def _x_labels(keys: Sequence[str], slot: float, height: int) -> str:
    """The class under each bar, thinned to about 30 labels."""
    every = max(1, math.ceil(len(keys) / 30))
    return "".join(
        f'<text class="tick" x="{LEFT + (i + 0.5) * slot:.1f}" y="{height - BOTTOM + 14}" '
        f'text-anchor="middle">{escape(key)}</text>'
        for i, key in enumerate(keys)
        if i % every == 0
    )


class Series(NamedTuple):
    """One line over steps; ``None`` values break it."""

    name: str
    points: Sequence[tuple[int, float | None]]
    style: int = 0
    """The colour's index in the page's palette."""
    dashed: bool = False


class Marker(NamedTuple):
    """A vertical line at one step (the issue step, the checks' start)."""

    step: int
    label: str
    style: str = "issue"


def line_chart(
    series: Sequence[Series],
    frame: Frame,
    *,
    markers: Sequence[Marker] = (),
    tooltip: Callable[[Series, int, float], str] | None = None,
) -> str:
    """Lines over steps, a dot per point kept (with its figures in a tooltip)."""
    head, mapped = _open(frame)
    height = frame.height
    steps = sorted({x for s in series for x, _ in s.points} | {m.step for m in markers})
    first, last = (steps[0], steps[-1]) if steps else (0, 1)
    span = max(last - first, 1)
    plot_width = WIDTH - LEFT - RIGHT

    def x_of(step: int) -> float:
        return LEFT + plot_width * (step - first) / span

    parts = [head]
    for tick in _step_ticks(first, last):
        x = x_of(tick)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - BOTTOM + 14}" text-anchor="middle">'
            f"{tick:,}</text>"
        )
    for position, marker in enumerate(markers):
        x = x_of(marker.step)
        right = x > LEFT + plot_width * 0.7  # a label near the right edge runs leftwards
        parts.append(
            f'<line class="marker {marker.style}" data-step="{marker.step}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}"><title>{escape(marker.label)}'
            f'</title></line><text class="marker-label {marker.style}" '
            f'x="{x - 4 if right else x + 4:.1f}" y="{TOP + 10 + 13 * position}" '
            f'text-anchor="{"end" if right else "start"}">{escape(marker.label)}</text>'
        )
    for line in series:
        runs: list[list[tuple[float, float]]] = [[]]
        dots: list[str] = []
        for step, value in line.points:
            if value is None:
                runs.append([])
                continue
            x, y = x_of(step), mapped(value)
            runs[-1].append((x, y))
            text = tooltip(line, step, value) if tooltip else f"step {step:,}: {number(value)}"
            dots.append(
                f'<circle class="dot c{line.style}" data-point="{step}" data-value="{value:g}" '
                f'cx="{x:.1f}" cy="{y:.1f}" r="2.2"><title>{escape(text)}</title></circle>'
            )
        paths = " ".join("M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in run) for run in runs if run)
        dash = " dashed" if line.dashed else ""
        parts.append(
            f'<g data-series="{escape(line.name)}"><path class="line c{line.style}{dash}" '
            f'd="{paths}"/>{"".join(dots) if len(dots) <= 400 else ""}</g>'
        )
    parts.append(_close(frame, mapped, "step"))
    return "".join(parts)


def _step_ticks(first: int, last: int) -> list[int]:
    step = max(1, int(_nice_step(last - first, 6)))
    start = math.ceil(first / step) * step
    return list(range(start, last + 1, step))


class Dot(NamedTuple):
    """One class in a scatter: where, its tooltip, and a style (``above``...)."""

    key: str
    x: float
    y: float
    tooltip: str
    style: str = ""


def scatter_chart(dots: Sequence[Dot], frame: Frame, *, x_axis: Axis, x_label: str) -> str:
    """A dot per class, for more classes than bars can show apart; each dot has a tooltip
    up to ``TITLED_BARS`` dots in a style (the rest share one path)."""
    head, mapped = _open(frame)
    height, plot_width = frame.height, WIDTH - LEFT - RIGHT
    across = Axis(x_axis.top, x_axis.log, x_axis.bottom, (LEFT + 4, LEFT + plot_width))
    parts = [head]
    for tick in across.ticks():
        x = across(tick)
        anchor = "end" if x > WIDTH - RIGHT - 20 else "middle"
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - BOTTOM + 14}" '
            f'text-anchor="{anchor}">{escape(number(tick, 3))}</text>'
        )
    untitled: dict[str, list[str]] = {}
    titled = 0
    for dot in sorted(dots, key=lambda d: bool(d.style)):  # styled dots drawn on top
        x, y = across(dot.x), mapped(dot.y)
        if dot.style and titled < TITLED_BARS:
            titled += 1
            parts.append(
                f'<circle class="dot {dot.style}" data-key="{escape(dot.key)}" '
                f'data-value="{dot.y:g}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(dot.tooltip)}</title></circle>"
            )
        else:
            untitled.setdefault(dot.style, []).append(f"M{x:.1f} {y:.1f}h0")
    for position, (style, moves) in enumerate(sorted(untitled.items())):
        parts.insert(
            1 + position,
            f'<path class="dots {style}" data-dots="{len(moves)}" d="{"".join(moves)}"/>',
        )
    parts.append(_close(frame, mapped, x_label))
    return "".join(parts)
