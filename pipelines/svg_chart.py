"""Horizontal bar charts as inline SVG strings.

The report must open anywhere with no network and no script, and five bar
charts do not justify a plotting library (matplotlib is not a dependency): a
bar chart is a few rectangles and labels, written here once.
"""

from __future__ import annotations

from html import escape

BAR_HEIGHT, GAP, BAR_WIDTH, VALUE_WIDTH, TITLE_HEIGHT = 18, 6, 360, 70, 30
CHAR_WIDTH = 7  # a generous average width of a 12px sans-serif character, so cut labels never run off the left


def _short(label: str, room: int) -> str:
    fits = max(room // CHAR_WIDTH, 4)
    return label if len(label) <= fits else label[:fits - 1] + "…"


def bar_chart(title: str, items: list[tuple[str, int]], *, value_suffix: str = "", empty: str = "nothing to plot",
              label_width: int = 260) -> str:
    """One ``<svg class="chart">`` with a ``<title>``, one bar per (label, value), longest bar = largest value.

    Labels are cut to fit, with the full text kept in each bar's tooltip; all text is escaped.
    """
    LABEL_WIDTH = label_width  # noqa: N806 (reads like the other layout constants)
    rows = max(len(items), 1)
    height = TITLE_HEIGHT + rows * (BAR_HEIGHT + GAP) + GAP
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    top = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-title="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="0" y="18" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not items:
        parts.append(f'<text x="{LABEL_WIDTH}" y="{TITLE_HEIGHT + BAR_HEIGHT - 4}" font-size="12" '
                     f'fill="#777">{escape(empty)}</text>')
    for i, (label, value) in enumerate(items):
        y = TITLE_HEIGHT + i * (BAR_HEIGHT + GAP)
        length = round(BAR_WIDTH * value / top) if value > 0 else 0
        parts.append(
            f'<g class="bar"><title>{escape(str(label))}: {value}{escape(value_suffix)}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 4}" font-size="12" text-anchor="end">'
            f"{escape(_short(str(label), LABEL_WIDTH - 12))}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length}" height="{BAR_HEIGHT}" fill="#4c78a8"/>'
            f'<text x="{LABEL_WIDTH + length + 6}" y="{y + BAR_HEIGHT - 4}" font-size="12">'
            f"{value}{escape(value_suffix)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


LINE_WIDTH, LINE_HEIGHT, AXIS_LEFT, AXIS_BOTTOM = 520, 180, 70, 40


def line_chart(title: str, labels: list[str], values: list[float | None], *, fmt=str,
               empty: str = "nothing to plot") -> str:
    """One ``<svg class="chart">`` with a line through (label, value) points in order, a dot per point.

    A point without a value (``None``: a version that did not record it) leaves a gap in the line. The y axis
    runs from 0 to the largest value; its top and the value of each point are written as ``fmt`` gives them.
    """
    known = [v for v in values if v is not None]
    width, height = AXIS_LEFT + LINE_WIDTH + 20, TITLE_HEIGHT + LINE_HEIGHT + AXIS_BOTTOM
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-title="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="0" y="18" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not known:
        parts.append(f'<text x="{AXIS_LEFT}" y="{TITLE_HEIGHT + 20}" font-size="12" fill="#777">{escape(empty)}</text>')
        return "".join(parts) + "</svg>"
    top = max(known) or 1.0
    bottom = TITLE_HEIGHT + LINE_HEIGHT
    step = LINE_WIDTH / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return AXIS_LEFT + (i * step if len(values) > 1 else LINE_WIDTH / 2), bottom - LINE_HEIGHT * v / top

    parts += [f'<line x1="{AXIS_LEFT}" y1="{bottom}" x2="{AXIS_LEFT + LINE_WIDTH}" y2="{bottom}" stroke="#999"/>',
              f'<line x1="{AXIS_LEFT}" y1="{TITLE_HEIGHT}" x2="{AXIS_LEFT}" y2="{bottom}" stroke="#999"/>',
              f'<text x="{AXIS_LEFT - 6}" y="{TITLE_HEIGHT + 10}" font-size="11" text-anchor="end">'
              f"{escape(fmt(top))}</text>",
              f'<text x="{AXIS_LEFT - 6}" y="{bottom}" font-size="11" text-anchor="end">{escape(fmt(0))}</text>']
    run: list[str] = []
    for i, v in enumerate([*values, None]):
        if v is None:
            if len(run) > 1:
                parts.append(f'<polyline fill="none" stroke="#4c78a8" stroke-width="2" points="{" ".join(run)}"/>')
            run = []
            continue
        x, y = xy(i, v)
        run.append(f"{x:.1f},{y:.1f}")
    every = max(1, len(values) // 12)  # at most about a dozen axis labels
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = xy(i, 0)[0]
        if i % every == 0 or i == len(values) - 1:
            parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">'
                         f"{escape(_short(label, 80))}</text>")
        if v is not None:
            _, y = xy(i, v)
            parts.append(f'<g class="point"><title>{escape(label)}: {escape(fmt(v))}</title>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#4c78a8"/></g>')
    parts.append("</svg>")
    return "".join(parts)
