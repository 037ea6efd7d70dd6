"""The HTML ladder of a real call's capture (``edgectl trace --html``) rendered by Debian's Chromium,
headless: the rendered DOM holds one arrow per SIP message of the call, in the ladder's order and
with its label, and a screenshot is kept in the test's tmp dir for people to look at (the one in
docs/images/ladder-origination.png was made by this test)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

from .conftest import Edge
from .test_sip_capture import both_legs_done, captured, edgectl, origination_call


class Arrows(HTMLParser):
    """The ``<g class="msg">`` groups of a DOM: per group, its ``data-index``, whether it holds a
    line or path with an arrow head, and its texts."""

    def __init__(self) -> None:
        super().__init__()
        self.arrows: list[dict] = []
        self.svg: dict[str, str] = {}
        self._depth = 0  # nesting inside the current msg group (0: outside)
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and not self.svg:
            self.svg = {k: v or "" for k, v in a.items()}
        if self._depth:
            self._depth += 1
            if tag in ("line", "path") and (a.get("marker-end") or "").startswith("url(#arrow"):
                self.arrows[-1]["head"] = True
            self._in_title = tag == "title"
        elif tag == "g" and (a.get("class") or "").split() == ["msg"]:
            self._depth = 1
            self.arrows.append({"index": a.get("data-index"), "head": False, "texts": []})

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._depth and not self._in_title and data.strip():
            self.arrows[-1]["texts"].append(data.strip())


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data) of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (scripts/bootstrap installs it)"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120)


def test_html_ladder_renders_one_arrow_per_sip_message_in_headless_chromium(clean_edge: Edge) -> None:
    edge = clean_edge
    call_id = origination_call(edge)
    messages = captured(edge, call_id, both_legs_done)
    page = edge.workdir / "ladder.html"
    code, out = edgectl(edge, "trace", call_id, "--html", str(page))
    assert code == 0, out
    profile = edge.workdir / "chromium-profile"  # a profile of its own: test runs share the machine

    dumped = chromium(f"--user-data-dir={profile}", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Arrows()
    dom.feed(dumped.stdout)
    assert len(messages) >= 10  # both legs: INVITE, 100, 200, ACK, BYE, 200 each way
    assert len(dom.arrows) == len(messages), (len(dom.arrows), [m["message"] for m in messages])
    assert [a["index"] for a in dom.arrows] == [str(i) for i in range(len(messages))]
    assert all(a["head"] for a in dom.arrows)
    # each arrow carries its message's method or status, in the ladder's order
    assert [a["texts"][0] for a in dom.arrows] == [m["message"] for m in messages]

    shot = edge.workdir / "ladder.png"
    width, height = int(dom.svg["width"]) + 40, int(dom.svg["height"]) + 160  # the heading above the picture
    taken = chromium(f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size={width},{height}",
                     page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    shot_w, shot_h, colours = png_size_and_colours(shot)
    assert (shot_w, shot_h) == (width, height)
    assert colours > 20, "the screenshot is blank"
