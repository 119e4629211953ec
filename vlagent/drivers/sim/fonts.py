"""Fonts for the simulated phone: find the best installed faces once, draw any Unicode text.

Text is drawn run by run: each character goes to the first face of the chain that has a
glyph for it (DejaVu / Noto for Latin, a CJK face such as Noto Sans CJK or Droid Sans
Fallback for Chinese, a monochrome emoji face when one is installed). Characters that no
face covers render as the primary face's box; the phone's *state* always keeps the exact
text, only the picture degrades.

This module must not hold per-phone state; its caches are keyed by font file and size.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Face", "FontSet", "font_set"]

log = logging.getLogger(__name__)

Face = ImageFont.FreeTypeFont | ImageFont.ImageFont

_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
_REGULAR = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Roboto-Regular.ttf", "LiberationSans-Regular.ttf")
_BOLD = ("DejaVuSans-Bold.ttf", "NotoSans-Bold.ttf", "Roboto-Bold.ttf", "LiberationSans-Bold.ttf")
# Wide-coverage faces tried, in order, for characters the primary face lacks.
_FALLBACK = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansSC-Regular.otf",
    "DroidSansFallbackFull.ttf",
    "DroidSansFallback.ttf",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "NotoEmoji-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
    "Symbola.ttf",
    "unifont.ttf",
)
# A code point no font maps: its bitmap is the face's "missing glyph" box.
_PROBE = "\U0010fffd"
# Bound on cached widths and text masks per FontSet (a screen shows a few hundred strings).
_CACHE_LIMIT = 4096


@functools.cache
def _installed() -> dict[str, str]:
    """File name -> path of every font file under the usual directories (scanned once)."""
    found: dict[str, str] = {}
    for root in _FONT_DIRS:
        for dirpath, _dirs, files in os.walk(os.path.expanduser(root)):
            for name in files:
                if name.lower().endswith((".ttf", ".otf", ".ttc")):
                    found.setdefault(name, os.path.join(dirpath, name))
    return found


def _first(names: tuple[str, ...]) -> str | None:
    installed = _installed()
    return next((installed[n] for n in names if n in installed), None)


@functools.cache
def _load(path: str | None, size: int) -> Face:
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError as exc:
            log.warning("cannot load font %s (%s); using Pillow's default font", path, exc)
    return ImageFont.load_default(size)


class FontSet:
    """A primary face plus fallbacks at one size; measures and draws mixed-script text."""

    def __init__(self, size: int, bold: bool = False) -> None:
        primary = _first(_BOLD if bold else _REGULAR) or _first(_REGULAR)
        fallbacks = [p for p in (_installed().get(n) for n in _FALLBACK) if p is not None and p != primary]
        self.size = size
        self.primary: Face = _load(primary, size)
        self.faces: list[Face] = [self.primary, *(_load(p, size) for p in fallbacks)]
        self._missing = [self._signature(face, _PROBE) for face in self.faces]
        self._choice: dict[str, int] = {}
        self._widths: dict[str, float] = {}
        self._masks: dict[tuple[int, str], tuple[int, int, Image.Image]] = {}

    @staticmethod
    def _signature(face: Face, ch: str) -> tuple[tuple[int, int], bytes]:
        mask = face.getmask(ch)
        return mask.size, bytes(mask)  # type: ignore[call-overload]

    def _face_index(self, ch: str) -> int:
        index = self._choice.get(ch)
        if index is None:
            index = 0
            if ord(ch) > 0x7F and not ch.isspace():
                for i, face in enumerate(self.faces):
                    if self._signature(face, ch) != self._missing[i]:
                        index = i
                        break
            self._choice[ch] = index
        return index

    def _index_runs(self, text: str) -> Iterator[tuple[int, str]]:
        start, current = 0, -1
        for i, ch in enumerate(text):
            index = self._face_index(ch)
            if index != current:
                if i > start:
                    yield current, text[start:i]
                start, current = i, index
        if len(text) > start:
            yield max(current, 0), text[start:]

    def runs(self, text: str) -> Iterator[tuple[Face, str]]:
        """Split ``text`` into maximal runs drawn with one face."""
        for index, run in self._index_runs(text):
            yield self.faces[index], run

    def width(self, text: str) -> float:
        width = self._widths.get(text)
        if width is None:
            width = sum(face.getlength(run) for face, run in self.runs(text))
            if len(self._widths) >= _CACHE_LIMIT:
                self._widths.clear()
            self._widths[text] = width
        return width

    def _mask(self, index: int, run: str) -> tuple[int, int, Image.Image]:
        """The run's coverage mask and its offset from the (left, middle) anchor, cached:
        rasterising glyphs is most of a frame's cost, and screens repeat their strings."""
        key = (index, run)
        found = self._masks.get(key)
        if found is None:
            face = self.faces[index]
            left, top, right, bottom = (int(v) for v in face.getbbox(run, anchor="lm"))
            mask = Image.new("L", (max(1, right - left), max(1, bottom - top)))
            ImageDraw.Draw(mask).text((-left, -top), run, font=face, fill=255, anchor="lm")
            if len(self._masks) >= _CACHE_LIMIT:
                self._masks.clear()
            found = self._masks[key] = (left, top, mask)
        return found

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple[int, int, int]) -> None:
        """Draw ``text`` with its left edge at x and its vertical middle at y."""
        x, y = xy
        for index, run in self._index_runs(text):
            left, top, mask = self._mask(index, run)
            draw.bitmap((round(x) + left, round(y) + top), mask, fill=fill)
            x += self.width(run)

    def fit(self, text: str, max_width: float) -> str:
        """``text`` cut with an ellipsis so that it fits ``max_width``."""
        if self.width(text) <= max_width:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(text[:mid] + "…") <= max_width:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo] + "…"

    def wrap(self, text: str, max_width: float) -> list[str]:
        """Lines of ``text`` broken at newlines and wherever a line would overflow."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line, width = "", 0.0  # width: sum of character advances (kerning ignored)
            for ch in paragraph:
                advance = self.width(ch)
                if line and width + advance > max_width:
                    cut = line.rfind(" ")
                    if cut > 0 and ch != " ":
                        lines.append(line[:cut])
                        line = line[cut + 1 :]
                    else:
                        lines.append(line)
                        line = ""
                    width = sum(self.width(c) for c in line)
                    if ch == " " and not line:
                        continue
                line += ch
                width += advance
            lines.append(line)
        return lines


@functools.cache
def font_set(size: int, bold: bool = False) -> FontSet:
    """The shared FontSet for ``size`` (fonts are loaded once per process)."""
    return FontSet(size, bold)
