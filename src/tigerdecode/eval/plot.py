"""A line plot drawn with Pillow (already a Gradio dependency): one curve per method, error
rate (y) against diversity (x). Small on purpose: axes, ticks, points, lines and a legend."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1e-3
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step) + 2)]


def line_plot(curves: dict[str, list[tuple[float, float, str]]], path: str | Path, *,
              title: str, xlabel: str, ylabel: str, size=(1000, 700)) -> Path:
    """Draw ``{name: [(x, y, label), ...]}`` as one polyline per name (points sorted by x) and
    write a PNG atomically. Point labels (e.g. the setting) are printed small beside points."""
    W, H = size
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    f_small, f_mid, f_big = _font(13), _font(16), _font(20)
    # the legend's column is as wide as its longest name (the plot keeps at least half the width)
    legend = max((d.textlength(str(n), font=f_mid) for n in curves), default=0)
    left, top, bottom = 90, 60, 80
    right = int(min(max(230, 52 + legend + 30), W / 2))
    pts = [(x, y) for c in curves.values() for x, y, _ in c
           if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        raise ValueError("nothing to plot: every point is missing or not finite")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = _ticks(min(xs), max(xs)), _ticks(min(0.0, min(ys)), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (W - left - right),
                H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom))

    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for t in xt:
        X, _ = px(t, y0)
        d.line([X, H - bottom, X, top], fill=(235, 235, 235))
        d.text((X, H - bottom + 6), f"{t:g}", fill="black", font=f_small, anchor="ma")
    for t in yt:
        _, Y = px(x0, t)
        d.line([left, Y, W - right, Y], fill=(235, 235, 235))
        d.text((left - 8, Y), f"{t:g}", fill="black", font=f_small, anchor="rm")
    d.rectangle([left, top, W - right, H - bottom], outline="black")
    d.text((W / 2, 20), title, fill="black", font=f_big, anchor="ma")
    d.text(((left + W - right) / 2, H - 35), xlabel, fill="black", font=f_mid, anchor="ma")
    ylab = Image.new("RGBA", (H, 30), (255, 255, 255, 0))
    ImageDraw.Draw(ylab).text((H / 2, 4), ylabel, fill="black", font=f_mid, anchor="ma")
    img.paste(ylab.rotate(90, expand=True), (10, 0), ylab.rotate(90, expand=True))
    for i, (name, pts_) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        good = sorted((x, y, lab) for x, y, lab in pts_ if math.isfinite(x) and math.isfinite(y))
        xy = [px(x, y) for x, y, _ in good]
        if len(xy) > 1:
            d.line(xy, fill=color, width=3)
        for (X, Y), (_, _, lab) in zip(xy, good, strict=True):
            d.ellipse([X - 5, Y - 5, X + 5, Y + 5], fill=color, outline="black")
            if lab:
                d.text((X + 7, Y - 7), str(lab), fill=color, font=f_small, anchor="lb")
        ly = top + 10 + 24 * i
        d.line([W - right + 15, ly + 8, W - right + 45, ly + 8], fill=color, width=3)
        d.text((W - right + 52, ly), name, fill="black", font=f_mid)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    img.save(tmp, format="PNG")
    tmp.replace(path)
    return path
