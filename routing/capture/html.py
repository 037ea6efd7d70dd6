"""A call's ladder drawn as one self-contained HTML page (inline SVG, no script, no external file).

One vertical lifeline per endpoint (the caller left of the edge, the callees right of it), one
horizontal arrow per SIP message from its sender's lifeline to its receiver's, labelled with the
method or status and its time; requests in blue, 1xx grey, 2xx green, 3xx-6xx red.  Below the
picture, every message in full (masked, ``Entry.text``) in a collapsed ``<details>``.  Each arrow
is an SVG ``<g class="msg">``: tests count them.
"""

from __future__ import annotations

import html

from routing.capture.ladder import Ladder

__all__ = ["render"]

_LANE_W = 260
_ROW_H = 34
_TOP = 70
_LEFT = 150


def _colour(label: str) -> str:
    head = label.split(" ", 1)[0]
    if not head.isdigit():
        return "#1f5fbf"
    code = int(head)
    return "#777777" if code < 200 else "#1d8a3a" if code < 300 else "#c0392b"


def render(ladder: Ladder) -> str:
    """The HTML page of ``ladder``."""
    lanes = list(ladder.lanes)
    x = {lane: _LEFT + i * _LANE_W for i, lane in enumerate(lanes)}
    height = _TOP + _ROW_H * (len(ladder.entries) + 1)
    width = _LEFT + _LANE_W * max(1, len(lanes) - 1) + 160
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="12">',
           '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
           '<path d="M0,0 L10,4 L0,8 z" fill="context-stroke"/></marker></defs>']
    for lane in lanes:
        name = "edge (byoc-edge)" if lane == "edge" else lane
        svg.append(f'<g class="lane"><text x="{x[lane]}" y="30" text-anchor="middle" font-weight="bold">'
                   f'{html.escape(name)}</text>'
                   f'<line x1="{x[lane]}" y1="40" x2="{x[lane]}" y2="{height - 10}" stroke="#999" '
                   f'stroke-dasharray="4,3"/></g>')
    start = ladder.start
    for i, e in enumerate(ladder.entries):
        y = _TOP + _ROW_H * i
        x1, x2 = x[e.src_lane], x[e.dst_lane]
        colour = _colour(e.label)
        if x1 == x2:  # the edge to itself (its own requests looped through its request route)
            path = f'<path d="M{x1},{y} h40 v14 h-38" fill="none" stroke="{colour}" marker-end="url(#arrow)"/>'
        else:
            path = (f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="1.6" '
                    f'marker-end="url(#arrow)"/>')
        mid = (x1 + x2) / 2 if x1 != x2 else x1 + 45
        title = html.escape(f"{e.time} {e.src} -> {e.dst} {e.label} ({e.cseq})\n" + "\n".join(e.details))
        svg.append(
            f'<g class="msg" data-index="{i}"><title>{title}</title>{path}'
            f'<text x="{mid}" y="{y - 5}" text-anchor="middle" fill="{colour}">{html.escape(e.label)}</text>'
            f'<text x="8" y="{y + 4}" fill="#555">+{e.ts - start:.3f}s</text></g>')
    svg.append("</svg>")
    rows = "\n".join(
        f"<details><summary>{i + 1}. +{e.ts - start:.3f}s {html.escape(e.src)} &rarr; {html.escape(e.dst)} "
        f"<b>{html.escape(e.label)}</b> {html.escape(e.cseq)}</summary><pre>{html.escape(e.text)}</pre></details>"
        for i, e in enumerate(ladder.entries))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>SIP ladder {html.escape(ladder.call_id)}</title>"
        "<style>body{font-family:sans-serif;margin:16px} pre{background:#f6f6f6;padding:8px;overflow-x:auto}"
        "summary{font-family:monospace;cursor:pointer}</style></head><body>"
        f"<h1>Call-ID {html.escape(ladder.call_id)}</h1>"
        f"<p>{len(ladder.entries)} SIP messages; digest response and nonce values masked.</p>\n"
        + "\n".join(svg) + "\n<h2>Messages</h2>\n" + rows + "\n</body></html>\n"
    )
