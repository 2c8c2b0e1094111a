"""Build the map's label glyphs (``assets/glyphs``) from a font installed on this machine.

MapLibre draws map text from signed-distance-field glyphs fetched per 256-code-point
range (``{fontstack}/{range}.pbf``); Chinese characters it draws itself with the
browser's fonts, Latin letters and digits it must fetch. Plotly's built-in offline
style points at a remote glyph server, which these machines cannot reach, so English
labels were missing. This script renders the glyphs once, with headless Chromium's
canvas (the same method MapLibre uses for Chinese), turns them into distance fields
and writes the ranges the labels need. The output is committed; nothing runs at
start-up and nothing is fetched at run time.

    .venv/bin/python tools/make_glyphs.py            # Noto Sans CJK SC (OFL), Debian fonts-noto-cjk

The files are written under the font name Plotly asks for (``Open Sans Regular``, the
only family it accepts for map text besides two others it does not ship either).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import PROJECT_ROOT  # noqa: E402
from reports.chromium import PLAYWRIGHT_ARGS  # noqa: E402

#: Font stack name the dashboard's map text asks for (``layers/outlines.py``).
FONTSTACK = "Open Sans Regular"
#: Basic Latin and Latin-1, Latin Extended-A (pinyin tones), general punctuation.
RANGES = ((0, 255), (256, 511), (8192, 8447))
#: The glyph format's constants: 24 px glyphs, 3 px border, 8 px distance field.
SIZE, BUFFER, RADIUS, CUTOFF = 24, 3, 8.0, 0.25
#: Font ascent at 24 px: tops are given from the line's top, as the glyph servers do.
ASCENT = 26

RENDER_JS = """([codes, font, size, buffer]) => {
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const out = [];
  for (const code of codes) {
    const ch = String.fromCodePoint(code);
    ctx.font = `${size}px ${font}`;
    const m = ctx.measureText(ch);
    const left = Math.ceil(m.actualBoundingBoxLeft), right = Math.ceil(m.actualBoundingBoxRight);
    const asc = Math.ceil(m.actualBoundingBoxAscent), desc = Math.ceil(m.actualBoundingBoxDescent);
    const w = Math.max(0, left + right), h = Math.max(0, asc + desc);
    let alpha = [];
    if (w > 0 && h > 0) {
      canvas.width = w + 2 * buffer; canvas.height = h + 2 * buffer;
      ctx.font = `${size}px ${font}`;
      ctx.textBaseline = 'alphabetic';
      ctx.fillStyle = 'black';
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.fillText(ch, buffer + left, buffer + asc);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < data.length; i += 4) alpha.push(data[i]);
    }
    out.push({code, w, h, left, asc, advance: m.width, alpha});
  }
  return out;
}"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, value) -> bytes:
    """One protobuf field: ints as varints (sint32 already zig-zagged), bytes/str length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def distance_field(alpha: np.ndarray) -> np.ndarray:
    """Signed distance field of a coverage bitmap, as the glyph format stores it (0-255,
    the outline at 192)."""
    inside = alpha >= 128
    if not inside.any():
        return np.zeros(alpha.shape, dtype=np.uint8)
    outside_d = ndimage.distance_transform_edt(~inside)
    inside_d = ndimage.distance_transform_edt(inside)
    d = np.where(inside, -(inside_d - 0.5), outside_d - 0.5)
    return np.clip(np.round(255 - 255 * (d / RADIUS + CUTOFF)), 0, 255).astype(np.uint8)


def glyph_range(rendered: list[dict], fontstack: str, lo: int, hi: int) -> bytes:
    """The ``{lo}-{hi}.pbf`` file of rendered glyphs."""
    glyphs = b""
    for g in rendered:
        g = {**g, **{k: int(g[k]) for k in ("code", "w", "h", "left", "asc")}}
        if g["code"] < 32 or 127 <= g["code"] < 160:
            continue  # control characters have no glyph
        bitmap = b""
        if g["w"] > 0 and g["h"] > 0:
            a = np.asarray(g["alpha"], dtype=np.uint8).reshape(g["h"] + 2 * BUFFER, g["w"] + 2 * BUFFER)
            bitmap = distance_field(a).tobytes()
        body = _field(1, g["code"])
        if bitmap:
            body += _field(2, bitmap)
        body += (
            _field(3, g["w"])
            + _field(4, g["h"])
            + _field(5, _zigzag(-g["left"]))
            + _field(6, _zigzag(g["asc"] - ASCENT))
            + _field(7, int(round(g["advance"])))
        )
        glyphs += _field(3, body)
    stack = _field(1, fontstack) + _field(2, f"{lo}-{hi}") + glyphs
    return _field(1, stack)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--font", default="'Noto Sans CJK SC'", help="CSS font family to draw with")
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "assets" / "glyphs")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    folder = args.out / FONTSTACK
    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=PLAYWRIGHT_ARGS)
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        for lo, hi in RANGES:
            rendered = page.evaluate(RENDER_JS, [list(range(lo, hi + 1)), args.font, SIZE, BUFFER])
            data = glyph_range(rendered, FONTSTACK, lo, hi)
            (folder / f"{lo}-{hi}.pbf").write_bytes(data)
            drawn = sum(1 for g in rendered if g["w"] > 0)
            print(f"{folder.name}/{lo}-{hi}.pbf: {drawn} glyphs drawn, {len(data) / 1e3:.1f} kB")
        browser.close()


if __name__ == "__main__":
    main()
