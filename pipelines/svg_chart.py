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
