"""A real browser: headless chromium opens the app on a deep link that runs a prompt, takes a
screenshot (checked not blank) and dumps the DOM (slider and highlighted tokens present)."""

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from urllib.parse import urlencode

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run "
    "installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=8000", "--window-size=1200,900"]


def chromium(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                             capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of pixel bytes (enough to tell blank from not)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def test_screenshot_and_dom(demo_url, tmp_path):
    url = demo_url + "?" + urlencode({"prompt": "Name a planet.", "creativity": 0.2,
                                      "max_new_tokens": 6})
    shot = tmp_path / "demo.png"
    chromium(url, f"--screenshot={shot}")
    width, bpp, rows = png_pixels(shot)
    assert (width, len(rows)) == (1200, 900)
    pixels = [r[i:i + 3] for r in rows[::4] for i in range(0, len(r), bpp * 4)]
    background = max(set(pixels), key=pixels.count)
    share = sum(p != background for p in pixels) / len(pixels)
    assert share > 0.02, f"the screenshot is blank ({share:.1%} of pixels differ)"
    assert len(set(pixels)) > 20, "the screenshot has almost no colours"

    dom = re.sub(r"<script.*?</script>", "", chromium(url, "--dump-dom"), flags=re.S)
    slider = dom[dom.index('id="creativity"'):]
    assert "Creativity" in slider[:3000] and 'type="range"' in slider[:3000]
    answer = dom[dom.index('id="answer-pdev"'):]
    answer = answer[:answer.index('id="answer-pstop"')] if 'id="answer-pstop"' in answer \
        else answer[:20000]
    tokens = re.findall(r'class="token score-token[^"]*" style="background-color: rgba\(', answer)
    assert len(tokens) == 6, "the answer's tokens are not highlighted"
    assert "Done" in dom
