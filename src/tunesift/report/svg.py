"""Small, dependency-free SVG charts (line and bar with error bars) for logs and leaderboards.

Plain SVG keeps reports viewable in any browser and embeddable in HTML/Markdown without
matplotlib in the install."""
from __future__ import annotations

from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(series: dict[str, list[tuple[float, float]]], title: str = "", xlabel: str = "", ylabel: str = "",
               width: int = 640, height: int = 320) -> str:
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40"><text x="10" y="25">{escape(title)}: no data</text></svg>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    L, R, T, B = 60, 20, 30, 40
    sx = lambda x: L + (x - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - (y - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>']
    for t in _ticks(y0, y1):
        out.append(f'<text x="{L - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{height - B + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">{escape(ylabel)}</text>')
    for k, (name, s) in enumerate(series.items()):
        c = PALETTE[k % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{width - R - 4}" y="{T + 14 * (k + 1)}" text-anchor="end" fill="{c}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(bars: list[tuple[str, float, float]], title: str = "", ylabel: str = "", width: int = 640,
              height: int = 320, reference: float | None = None) -> str:
    """``bars``: (label, mean, half-width of the error bar); ``reference``: a dashed horizontal line."""
    if not bars:
        return line_chart({}, title)
    vals = [m - e for _, m, e in bars] + [m + e for _, m, e in bars] + ([reference] if reference is not None else [])
    y0, y1 = min(0.0, min(vals)), max(vals)
    if y1 == y0:
        y1 = y0 + 1
    L, R, T, B = 60, 20, 30, 70
    sy = lambda y: height - B - (y - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    w = (width - L - R) / len(bars)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{L}" y1="{sy(y0):.1f}" x2="{width - R}" y2="{sy(y0):.1f}" stroke="#333"/>']
    for t in _ticks(y0, y1):
        out.append(f'<text x="{L - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">{escape(ylabel)}</text>')
    for k, (label, m, e) in enumerate(bars):
        x = L + k * w + w * 0.15
        c = PALETTE[k % len(PALETTE)]
        top, base = sy(max(m, y0)), sy(y0)
        out.append(f'<rect x="{x:.1f}" y="{min(top, base):.1f}" width="{w * 0.7:.1f}" height="{abs(base - top):.1f}" fill="{c}" opacity="0.8"/>')
        if e > 0:
            cx = x + w * 0.35
            out.append(f'<line x1="{cx:.1f}" y1="{sy(m - e):.1f}" x2="{cx:.1f}" y2="{sy(m + e):.1f}" stroke="#000"/>')
        out.append(f'<text x="{x + w * 0.35:.1f}" y="{height - B + 14}" text-anchor="end" '
                   f'transform="rotate(-35 {x + w * 0.35:.1f} {height - B + 14})">{escape(label)}</text>')
    if reference is not None:
        out.append(f'<line x1="{L}" y1="{sy(reference):.1f}" x2="{width - R}" y2="{sy(reference):.1f}" '
                   'stroke="#555" stroke-dasharray="4 3"/>')
    out.append("</svg>")
    return "\n".join(out)


# Charts for the selection report.  Each root carries class="chart" and data-chart=NAME so a browser
# test can find it; marks carry class="mark" (what a drawn chart has and an empty one lacks).

def _open(name: str, title: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(name)}" role="img" '
            f'aria-label="{escape(title)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            'font-family="sans-serif" font-size="11">',
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>']


def _legend(items: list[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for k, (label, color) in enumerate(items):
        out.append(f'<rect x="{x:.1f}" y="{y + 14 * k - 9:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y + 14 * k:.1f}">{escape(label)}</text>')
    return out


def histogram(name: str, edges: list[float], layers: list[tuple[str, list[float], str]], title: str = "",
              xlabel: str = "", ylabel: str = "count", stacked: bool = True,
              markers: list[tuple[float, str, str]] = (), width: int = 1000, height: int = 300) -> str:
    """Bars over ``edges`` (len(counts) + 1 values): ``layers`` (label, counts, colour) stacked, or
    drawn over one another (``stacked=False``, for shares of two populations); ``markers``: vertical
    dashed lines (x, label, colour)."""
    n = len(edges) - 1
    if n < 1 or not layers:
        return line_chart({}, title)
    tops = [sum(c[i] for _, c, _ in layers) for i in range(n)] if stacked else \
        [max(c[i] for _, c, _ in layers) for i in range(n)]
    y1 = max(max(tops), 1e-12)
    x0, x1 = edges[0], edges[-1]
    if x1 <= x0:
        x1 = x0 + 1
    L, R, T, B = 60, 170, 30, 42
    sx = lambda x: L + (min(max(x, x0), x1) - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - y / y1 * (height - T - B)  # noqa: E731
    out = _open(name, title, width, height)
    out += [f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>',
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>']
    for t in _ticks(0, y1):
        out.append(f'<text x="{L - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{height - B + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">{escape(ylabel)}</text>')
    base = [0.0] * n
    for label, counts, color in layers:
        for i in range(n):
            v = counts[i]
            if v <= 0:
                continue
            lo = base[i] if stacked else 0.0
            xa, xb = sx(edges[i]), sx(edges[i + 1])
            out.append(f'<rect class="mark" x="{xa:.1f}" y="{sy(lo + v):.1f}" width="{max(xb - xa - 0.5, 0.5):.1f}" '
                       f'height="{sy(lo) - sy(lo + v):.1f}" fill="{color}"'
                       + ('' if stacked else ' fill-opacity="0.55"') + f'><title>{escape(label)}: {_fmt(v)}</title></rect>')
            if stacked:
                base[i] += v
    for k, (x, label, color) in enumerate(markers):
        out.append(f'<line class="marker" x1="{sx(x):.1f}" y1="{T}" x2="{sx(x):.1f}" y2="{height - B}" stroke="{color}" '
                   f'stroke-width="2" stroke-dasharray="5 3"><title>{escape(label)}</title></line>')
    out += _legend([(lb, c) for lb, _, c in layers], width - R + 12, T + 12)
    out += [f'<line x1="{width - R + 12}" y1="{T + 14 * (len(layers) + k) + 7}" x2="{width - R + 22}" '
            f'y2="{T + 14 * (len(layers) + k) + 7}" stroke="{c}" stroke-width="2" stroke-dasharray="3 2"/>'
            f'<text x="{width - R + 26}" y="{T + 14 * (len(layers) + k) + 11}">{escape(lb)}</text>'
            for k, (_, lb, c) in enumerate(markers)]
    out.append("</svg>")
    return "\n".join(out)


def scatter(name: str, groups: list[tuple[str, list[tuple[float, float]], str, float]], title: str = "",
            xlabel: str = "", ylabel: str = "", width: int = 600, height: int = 520) -> str:
    """``groups``: (label, points, colour, radius), drawn in order (the last on top)."""
    pts = [p for _, g, _, _ in groups for p in g]
    if not pts:
        return line_chart({}, title)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    px, py = (x1 - x0) * 0.03, (y1 - y0) * 0.03   # points on the frame stay visible
    x0, x1, y0, y1 = x0 - px, x1 + px, y0 - py, y1 + py
    L, R, T, B = 30, 20, 30, 40
    sx = lambda x: L + (x - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - (y - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    out = _open(name, title, width, height)
    out.append(f'<rect x="{L}" y="{T}" width="{width - L - R}" height="{height - T - B}" fill="none" stroke="#999"/>')
    for label, g, color, r in groups:
        out.append(f'<g class="mark" fill="{color}"><title>{escape(label)}</title>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}"/>' for x, y in g]
        out.append("</g>")
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 22}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">{escape(ylabel)}</text>')
    out += [f'<rect x="{L + 150 * k}" y="{height - 15}" width="10" height="10" fill="{c}"/>'
            f'<text x="{L + 150 * k + 14}" y="{height - 6}">{escape(lb)}</text>' for k, (lb, _, c, _) in enumerate(groups)]
    out.append("</svg>")
    return "\n".join(out)


def hbars(name: str, rows: list[tuple[str, list[float]]], series: list[tuple[str, str]], title: str = "",
          xlabel: str = "", percent: bool = False, width: int = 760, label_width: int = 220) -> str:
    """Grouped horizontal bars: ``rows`` (label, one value per series), ``series`` (label, colour)."""
    if not rows:
        return line_chart({}, title)
    bar, gap = 11, 8
    T, B = 30 + 14 * len(series), 34
    height = T + B + len(rows) * (bar * len(series) + gap)
    L, R = label_width, 70
    x1 = max(max(v) for _, v in rows) or 1.0
    sx = lambda v: L + v / x1 * (width - L - R)  # noqa: E731
    fmt = (lambda v: f"{v:.1%}") if percent else _fmt  # noqa: E731
    out = _open(name, title, width, height)
    out += _legend(list(series), L, 38)
    out.append(f'<line x1="{L}" y1="{T - 4}" x2="{L}" y2="{height - B + 4}" stroke="#333"/>')
    y = T
    for label, vals in rows:
        short = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{L - 6}" y="{y + bar * len(series) / 2 + 4:.1f}" text-anchor="end">{escape(short)}'
                   f'<title>{escape(label)}</title></text>')
        for k, ((sname, color), v) in enumerate(zip(series, vals)):
            out.append(f'<rect class="mark" x="{L}" y="{y + k * bar}" width="{max(sx(v) - L, 0.5):.1f}" height="{bar - 1}" '
                       f'fill="{color}"><title>{escape(sname)}: {fmt(v)}</title></rect>')
            out.append(f'<text x="{sx(v) + 4:.1f}" y="{y + k * bar + bar - 2}" font-size="9">{fmt(v)}</text>')
        y += bar * len(series) + gap
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def forest(name: str, rows: list[tuple[str, float, float]], title: str = "", xlabel: str = "",
           better: str = "left", width: int = 760, label_width: int = 170) -> str:
    """Differences with their intervals, one row each (label, difference, half-width; nan: none),
    around a zero line; a row whose interval excludes zero is drawn solid and coloured by which
    side is better (``better``: the side of zero that means an improvement)."""
    if not rows:
        return line_chart({}, title)
    row_h, T, B = 18, 30, 40
    height = T + B + row_h * len(rows)
    L, R = label_width, 30
    ends = [d - (e if e == e else 0) for _, d, e in rows] + [d + (e if e == e else 0) for _, d, e in rows] + [0.0]
    x0, x1 = min(ends), max(ends)
    pad = (x1 - x0) * 0.05 or 1.0
    x0, x1 = x0 - pad, x1 + pad
    sx = lambda v: L + (v - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    out = _open(name, title, width, height)
    out.append(f'<line x1="{sx(0):.1f}" y1="{T - 4}" x2="{sx(0):.1f}" y2="{height - B + 4}" stroke="#555" '
               'stroke-dasharray="4 3"/>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{height - B + 18}" text-anchor="middle">{_fmt(t)}</text>')
    for k, (label, d, e) in enumerate(rows):
        y = T + k * row_h + row_h / 2
        has = e == e
        sig = has and (d - e > 0 or d + e < 0)
        good = (d < 0) == (better == "left")
        color = ("#2ca02c" if good else "#d62728") if sig else "#7f7f7f"
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        if has:
            out.append(f'<line class="mark" x1="{sx(d - e):.1f}" y1="{y:.1f}" x2="{sx(d + e):.1f}" y2="{y:.1f}" '
                       f'stroke="{color}" stroke-width="2"/>')
        fill = color if sig else "white"
        out.append(f'<circle class="mark" cx="{sx(d):.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{color}">'
                   f'<title>{escape(label)}: {d:+.4g}' + (f' ± {e:.2g}' if has else '') + '</title></circle>')
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append("</svg>")
    return "\n".join(out)
