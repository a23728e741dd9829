"""A small line chart drawn on the server as inline SVG: no script, so it shows the same in any
browser, in headless screenshots and in a DOM dump. Points carry a hover title."""

from __future__ import annotations

import html
from dataclasses import dataclass

PALETTE = ["#0969da", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#cf4a00", "#1b7c83",
           "#57606a", "#e85aad", "#6e7781"]


@dataclass
class Series:
    name: str
    points: list[tuple[float, float, str]]  # (x, y, hover text), drawn in this order
    colour: str | None = None


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1)
    return [lo + i * step for i in range(n)]


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A data range with 5% room on each side, so edge points and tick labels don't collide."""
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def line_chart(series: list[Series], *, x_title: str, y_title: str,
               x_range: tuple[float, float] | None = None,
               y_range: tuple[float, float] | None = None,
               mark: tuple[float, float, str] | None = None, css_class: str = "td-chart",
               width: int = 640, height: int = 220) -> str:
    """SVG for ``series`` (one polyline with dots each) plus an optional ringed ``mark``;
    empty string when there is nothing to draw."""
    xs = [p[0] for s in series for p in s.points]
    ys = [p[1] for s in series for p in s.points]
    if not xs:
        return ""
    x0, x1 = x_range or _padded(min(xs), max(xs))
    y0, y1 = y_range or _padded(min(ys), max(ys))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    rows = -(-len(series) // 4)  # legend rows of four
    left, right, top, bottom = 44, 12, 12, 36 + 14 * rows
    height += 14 * rows
    w, h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + w * (x - x0) / (x1 - x0), top + h * (1 - (y - y0) / (y1 - y0))

    out = [f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
           f'{height}" width="100%" role="img" aria-label="{html.escape(y_title)} against '
           f'{html.escape(x_title)}" style="font:11px sans-serif;max-width:100%">']
    for y in _ticks(y0, y1):
        _, py = at(x0, y)
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="#d0d7de"/><text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" '
                   f'fill="#57606a">{y:.3g}</text>')
    for x in _ticks(x0, x1):
        px, _ = at(x, y0)
        out.append(f'<text x="{px:.1f}" y="{top + h + 14}" text-anchor="middle" '
                   f'fill="#57606a">{x:.3g}</text>')
    out.append(f'<text x="{left + w / 2:.1f}" y="{top + h + 28}" text-anchor="middle" '
               f'fill="#24292f">{html.escape(x_title)}</text><text x="12" y="{top + h / 2:.1f}" '
               f'transform="rotate(-90 12 {top + h / 2:.1f})" text-anchor="middle" '
               f'fill="#24292f">{html.escape(y_title)}</text>')
    for i, s in enumerate(series):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        pts = [(*at(x, y), text) for x, y, text in s.points]
        out.append(f'<polyline class="{css_class}-line" data-series="{html.escape(s.name)}" '
                   f'fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in pts) + '"/>')
        out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"><title>'
                f"{html.escape(text)}</title></circle>" for px, py, text in pts]
        lx, ly = left + (i % 4) * 150, top + h + 30 + 14 * (i // 4 + 1)
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="12" height="3" fill="{colour}"/>'
                   f'<text x="{lx + 16}" y="{ly}" fill="#24292f">{html.escape(s.name)}</text>')
    if mark is not None:
        px, py = at(mark[0], mark[1])
        out.append(f'<circle class="{css_class}-mark" cx="{px:.1f}" cy="{py:.1f}" r="8" '
                   f'fill="none" stroke="#24292f" stroke-width="2"><title>'
                   f"{html.escape(mark[2])}</title></circle>")
    out.append("</svg>")
    return "".join(out)
