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
