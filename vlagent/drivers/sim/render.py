"""Drawing for the simulated phone: turns a laid-out element list into a Pillow image.

Pure functions of their inputs (elements, size, theme): the phone decides what is where,
this module only decides how it looks, light or dark. It must not read or change phone
state, so that one laid-out state always gives the same pixels.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

from vlagent.drivers.sim.catalog import Element
from vlagent.drivers.sim.fonts import FontSet, font_set

__all__ = ["DARK", "LIGHT", "Palette", "copy_on_write", "paint", "paint_transition"]

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
_HALF = [v // 2 for v in range(256)] * 3
"""Each channel halved: the same pixels as a blend with black at 0.5 (Pillow truncates)."""
_SCRIM_ROWS = 64


@dataclass(frozen=True)
class Palette:
    bg: RGB
    surface: RGB
    text: RGB
    muted: RGB
    divider: RGB
    accent: RGB
    on_accent: RGB
    appbar: RGB
    nav: RGB
    keyboard: RGB
    key: RGB
    track_off: RGB
    thumb_off: RGB
    error: RGB


LIGHT = Palette(
    bg=(250, 250, 250), surface=(255, 255, 255), text=(32, 33, 36), muted=(95, 99, 104), divider=(224, 224, 224),
    accent=(26, 115, 232), on_accent=WHITE, appbar=(241, 243, 244), nav=(241, 243, 244), keyboard=(226, 229, 233),
    key=WHITE, track_off=(189, 193, 198), thumb_off=(250, 250, 250), error=(197, 34, 31),
)  # fmt: skip
DARK = Palette(
    bg=(18, 18, 18), surface=(38, 39, 42), text=(232, 234, 237), muted=(154, 160, 166), divider=(60, 64, 67),
    accent=(138, 180, 248), on_accent=(32, 33, 36), appbar=(32, 33, 36), nav=(24, 24, 24), keyboard=(41, 42, 45),
    key=(72, 75, 80), track_off=(95, 99, 104), thumb_off=(200, 200, 200), error=(242, 139, 130),
)  # fmt: skip


def copy_on_write(image: Image.Image) -> Image.Image:
    """A read-only view of ``image`` sharing its pixels: free to make, and safe to edit, because Pillow
    copies a read-only image before drawing, pasting or ``putpixel`` changes it (writes through
    ``load()`` raise instead). A rendered screen is ~10 MB; an episode holds one per step."""
    view = image._new(image.im)
    view.readonly = 1
    return view


_WALLPAPER_LOCK = threading.Lock()


def _wallpaper(width: int, height: int, dark: bool) -> Image.Image:
    with _WALLPAPER_LOCK:  # phones starting together paint it once, not each its own (~10 MB of steps each)
        return _painted_wallpaper(width, height, dark)


@functools.cache
def _painted_wallpaper(width: int, height: int, dark: bool) -> Image.Image:
    gradient = Image.linear_gradient("L").resize((width, height))
    top, bottom = ((26, 35, 70), (72, 30, 90)) if dark else ((66, 133, 244), (156, 39, 176))
    return ImageOps.colorize(gradient, top, bottom).convert("RGB")


class _Painter:
    def __init__(self, image: Image.Image, u: float, palette: Palette, on_dark_bg: bool) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.u = u
        self.p = palette
        self.chrome = WHITE if on_dark_bg else palette.text
        self.on_dark_bg = on_dark_bg

    def font(self, size: int, bold: bool = False) -> FontSet:
        return font_set(max(8, round(size * self.u)), bold)

    def px(self, value: float) -> int:
        return round(value * self.u)

    def text(
        self,
        box: tuple[float, float, float, float],
        text: str,
        size: int,
        fill: RGB,
        bold: bool = False,
        center: bool = True,
        y: float | None = None,
    ) -> None:
        fonts = self.font(size, bold)
        text = fonts.fit(text, box[2] - box[0])
        x = (box[0] + box[2] - fonts.width(text)) / 2 if center else box[0]
        fonts.draw(self.draw, (x, (box[1] + box[3]) / 2 if y is None else y), text, fill)

    def element(self, e: Element) -> None:
        getattr(self, f"_{e.kind}")(e)

    # one method per element kind -----------------------------------------------------------

    def _wallpaper(self, e: Element) -> None:
        return None  # the image already starts as the wallpaper

    def _panel(self, e: Element) -> None:
        colors = {"appbar": self.p.appbar, "nav": self.p.nav, "keyboard": self.p.keyboard}
        if e.role == "nav" and self.on_dark_bg:
            return
        if e.role == "camera":
            self.draw.rectangle(e.box, fill=(16, 16, 16))
            x0, y0, x1, y1 = self.px(60), self.px(260), e.box[2] - self.px(60), self.px(1760)
            self.draw.rounded_rectangle((x0, y0, x1, y1), radius=self.px(24), fill=(48, 56, 52))
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            self.draw.line((cx - self.px(60), cy, cx + self.px(60), cy), fill=WHITE, width=self.px(4))
            self.draw.line((cx, cy - self.px(60), cx, cy + self.px(60)), fill=WHITE, width=self.px(4))
            return
        self.draw.rectangle(e.box, fill=colors.get(e.role, self.p.bg))

    def _status(self, e: Element) -> None:
        _, y0, x1, y1 = e.box
        if not self.on_dark_bg:
            self.draw.rectangle(e.box, fill=self.p.appbar)
        mid = (y0 + y1) / 2
        fg = self.chrome
        self.font(36).draw(self.draw, (self.px(40), mid), e.texts[0], fg)
        battery = e.texts[1]
        fonts = self.font(34)
        x = x1 - self.px(40) - fonts.width(battery)
        fonts.draw(self.draw, (x, mid), battery, fg)
        # battery: outline, 85 % fill, nub
        bx1, bx0 = x - self.px(14), x - self.px(14) - self.px(30)
        by0, by1 = mid - self.px(24), mid + self.px(24)
        self.draw.rectangle((bx0 + self.px(9), by0 - self.px(5), bx1 - self.px(9), by0), fill=fg)
        self.draw.rectangle((bx0, by0, bx1, by1), outline=fg, width=self.px(3))
        level = by1 - self.px(3) - (by1 - by0 - self.px(6)) * 0.85
        self.draw.rectangle((bx0 + self.px(5), level, bx1 - self.px(5), by1 - self.px(5)), fill=fg)
        x = bx0 - self.px(24)
        for icon in e.subtitle.split():
            x = getattr(self, f"_icon_{icon}")(x, mid, fg)

    def _icon_wifi(self, right: float, mid: float, fg: RGB) -> float:
        r = self.px(30)
        cx, cy = right - r, mid + self.px(16)
        self.draw.pieslice((cx - r, cy - r, cx + r, cy + r), 225, 315, fill=fg)
        return cx - r - self.px(20)

    def _icon_signal(self, right: float, mid: float, fg: RGB) -> float:
        w, h = self.px(44), self.px(40)
        self.draw.polygon([(right, mid - h / 2), (right, mid + h / 2), (right - w, mid + h / 2)], fill=fg)
        return right - w - self.px(20)

    def _icon_bluetooth(self, right: float, mid: float, fg: RGB) -> float:
        s, x = self.px(20), right - self.px(16)
        pts = [(x - s, mid - s / 2), (x + s / 2, mid + s / 2), (x, mid + s), (x, mid - s), (x + s / 2, mid - s / 2)]
        self.draw.line([*pts, (x - s, mid + s / 2)], fill=fg, width=self.px(4))
        return x - s - self.px(24)

    def _icon_airplane(self, right: float, mid: float, fg: RGB) -> float:
        fonts = self.font(40)
        width = fonts.width("✈")
        fonts.draw(self.draw, (right - width, mid), "✈", fg)
        return right - width - self.px(20)

    def _icon_dnd(self, right: float, mid: float, fg: RGB) -> float:
        r = self.px(18)
        cx = right - r
        self.draw.ellipse((cx - r, mid - r, cx + r, mid + r), fill=fg)
        self.draw.rectangle((cx - r * 0.6, mid - self.px(3), cx + r * 0.6, mid + self.px(3)), fill=self.p.appbar)
        return cx - r - self.px(20)

    def _nav(self, e: Element) -> None:
        cx, cy = (e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2
        s, w = self.px(24), self.px(5)
        if e.label == "Back":
            self.draw.polygon([(cx + s, cy - s), (cx + s, cy + s), (cx - s, cy)], outline=self.chrome, width=w)
        elif e.label == "Home":
            self.draw.ellipse((cx - s, cy - s, cx + s, cy + s), outline=self.chrome, width=w)
        else:
            self.draw.rounded_rectangle(
                (cx - s, cy - s, cx + s, cy + s), radius=self.px(6), outline=self.chrome, width=w
            )

    def _title(self, e: Element) -> None:
        self.text(e.box, e.label, e.size, self.p.text, bold=True, center=False)

    def _text(self, e: Element) -> None:
        colors = {"muted": self.p.muted, "error": self.p.error, "on_wallpaper": WHITE}
        self.text(e.box, e.text or e.label, e.size, colors.get(e.role, self.p.text))

    def _row(self, e: Element) -> None:
        x0, y0, x1, y1 = e.box
        left = x0 + self.px(56)
        if e.color is not None:  # contact avatar with the initial
            r, cx, cy = self.px(52), left + self.px(52), (y0 + y1) / 2
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=e.color)
            self.text((int(cx - r), int(cy - r), int(cx + r), int(cy + r)), e.label[:1].upper(), 50, WHITE, bold=True)
            left += self.px(140)
        right = x1 - self.px(56) - (self.px(150) if e.value is not None else 0)
        if e.subtitle:
            self.text((left, y0, right, y1), e.label, 46, self.p.text, center=False, y=y0 + (y1 - y0) * 0.36)
            self.text((left, y0, right, y1), e.subtitle, 36, self.p.muted, center=False, y=y0 + (y1 - y0) * 0.68)
        else:
            self.text((left, y0, right, y1), e.label, 46, self.p.text, center=False)
        self.draw.line((x0 + self.px(56), y1 - 1, x1, y1 - 1), fill=self.p.divider, width=max(1, self.px(2)))
        if e.value is not None:
            tw, th = self.px(112), self.px(60)
            tx1, ty0 = float(x1 - self.px(56)), (y0 + y1 - th) / 2
            track = self.p.accent if e.value else self.p.track_off
            self.draw.rounded_rectangle((tx1 - tw, ty0, tx1, ty0 + th), radius=th // 2, fill=track)
            tr = th / 2 - self.px(6)
            tcx = tx1 - th / 2 if e.value else tx1 - tw + th / 2
            thumb = self.p.on_accent if e.value else self.p.thumb_off
            self.draw.ellipse((tcx - tr, ty0 + th / 2 - tr, tcx + tr, ty0 + th / 2 + tr), fill=thumb)

    def _icon(self, e: Element) -> None:
        x0, y0, x1, _ = e.box
        size = self.px(160)
        ix0, iy0 = (x0 + x1 - size) // 2, y0 + self.px(20)
        self.draw.rounded_rectangle(
            (ix0, iy0, ix0 + size, iy0 + size), radius=self.px(40), fill=e.color or self.p.accent
        )
        self.text((ix0, iy0, ix0 + size, iy0 + size), e.label[:1], 90, WHITE, bold=True)
        label_box = (x0, iy0 + size + self.px(10), x1, iy0 + size + self.px(70))
        shadow = (label_box[0] + 2, label_box[1] + 2, label_box[2] + 2, label_box[3] + 2)
        self.text(shadow, e.label, 38, (20, 20, 40))
        self.text(label_box, e.label, 38, WHITE)

    def _button(self, e: Element) -> None:
        radius = (e.box[3] - e.box[1]) // 3
        self.draw.rounded_rectangle(e.box, radius=radius, fill=self.p.accent)
        self.text(e.box, e.text or e.label, e.size, self.p.on_accent, bold=True)

    def _text_button(self, e: Element) -> None:
        self.text(e.box, e.label, e.size, self.p.accent, bold=True)

    def _icon_button(self, e: Element) -> None:
        cx, cy, s, w = (e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2, self.px(26), self.px(5)
        self.draw.line((cx - s, cy, cx + s, cy), fill=self.p.text, width=w)
        self.draw.line((cx - s, cy, cx, cy - s), fill=self.p.text, width=w)
        self.draw.line((cx - s, cy, cx, cy + s), fill=self.p.text, width=w)

    def _field(self, e: Element) -> None:
        x0, y0, x1, y1 = e.box
        outline = self.p.accent if e.focused else self.p.muted
        self.draw.rounded_rectangle(e.box, radius=self.px(16), outline=outline, width=self.px(5 if e.focused else 3))
        self.text((x0 + self.px(8), y0 - self.px(70), x1, y0 - self.px(10)), e.label, 36, outline, center=False)
        fonts, line_h, pad = self.font(46), self.px(64), self.px(32)
        lines = fonts.wrap(e.text, x1 - x0 - 2 * pad) if e.text else [e.subtitle]
        color = self.p.text if e.text else self.p.muted
        max_lines = max(1, (y1 - y0 - pad) // line_h)
        lines = lines[-max_lines:]  # keep the end in view, where the cursor is
        y = y0 + pad + line_h / 2 - self.px(6)
        for line in lines:
            fonts.draw(self.draw, (x0 + pad, y), line, color)
            y += line_h
        if e.focused:
            cx = x0 + pad + (fonts.width(lines[-1]) if e.text else 0) + self.px(3)
            cy = y - line_h
            self.draw.line((cx, cy - self.px(26), cx, cy + self.px(26)), fill=self.p.accent, width=self.px(4))

    def _key(self, e: Element) -> None:
        self.draw.rounded_rectangle(e.box, radius=self.px(12), fill=self.p.key)
        self.text(e.box, e.text or e.label, 44 if len(e.text) > 1 else 50, self.p.text)

    def _card(self, e: Element) -> None:
        x0, y0, x1, y1 = e.box
        self.draw.rounded_rectangle(e.box, radius=self.px(32), fill=self.p.surface, outline=self.p.divider, width=2)
        r = self.px(34)
        cx, cy = x0 + self.px(70), y0 + self.px(70)
        self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=e.color or self.p.accent)
        self.text(
            (x0 + self.px(130), y0 + self.px(30), x1, y0 + self.px(110)),
            e.label,
            46,
            self.p.text,
            bold=True,
            center=False,
        )
        body = (x0 + self.px(40), y0 + self.px(130), x1 - self.px(40), y1 - self.px(40))
        self.draw.rounded_rectangle(body, radius=self.px(16), fill=self.p.bg)

    def _shutter(self, e: Element) -> None:
        pad = self.px(18)
        self.draw.ellipse(e.box, outline=WHITE, width=self.px(8))
        self.draw.ellipse((e.box[0] + pad, e.box[1] + pad, e.box[2] - pad, e.box[3] - pad), fill=WHITE)

    def _scrim(self, e: Element) -> None:
        # Dim what is already drawn to half (a modal popup's backdrop), a band of rows at a time: the
        # whole screen cropped, a black screen and their blend were three more screens in memory.
        x0, y0, x1, y1 = e.box
        for top in range(y0, y1, _SCRIM_ROWS):
            band = (x0, top, x1, min(y1, top + _SCRIM_ROWS))
            self.image.paste(self.image.crop(band).point(_HALF), band)
        self.draw = ImageDraw.Draw(self.image)

    def _popup(self, e: Element) -> None:
        x0, y0, x1, _ = e.box
        self.draw.rounded_rectangle(e.box, radius=self.px(40), fill=self.p.surface)
        pad = self.px(60)
        self.text(
            (x0 + pad, y0 + self.px(40), x1 - pad, y0 + self.px(130)), e.text, 52, self.p.text, bold=True, center=False
        )
        y = y0 + self.px(150)
        for line in e.subtitle.split("\n"):
            self.text((x0 + pad, y, x1 - pad, y + self.px(70)), line, 40, self.p.muted, center=False)
            y += self.px(70)

    def _padlock(self, e: Element) -> None:
        x0, y0, x1, y1 = e.box
        w = self.px(8)
        shackle = (x0 + (x1 - x0) // 5, y0, x1 - (x1 - x0) // 5, y0 + (y1 - y0) * 3 // 4)
        self.draw.arc(shackle, 180, 360, fill=WHITE, width=w)
        middle = (shackle[1] + shackle[3]) // 2
        for x in (shackle[0], shackle[2] - w):
            self.draw.rectangle((x, middle, x + w, y0 + (y1 - y0) // 2), fill=WHITE)
        self.draw.rounded_rectangle((x0, y0 + (y1 - y0) * 2 // 5, x1, y1), radius=self.px(12), fill=WHITE)

    def _photo(self, e: Element) -> None:
        self.draw.rounded_rectangle(e.box, radius=self.px(12), fill=e.color or self.p.accent)


def paint(width: int, height: int, u: float, elements: Sequence[Element], dark: bool) -> Image.Image:
    """Draw ``elements`` in order on a fresh frame."""
    palette = DARK if dark else LIGHT
    on_dark_bg = bool(elements) and (elements[0].kind == "wallpaper" or elements[0].role == "camera")
    image = _wallpaper(width, height, dark).copy() if elements and elements[0].kind == "wallpaper" else None
    if image is None:
        image = Image.new("RGB", (width, height), palette.bg)
    painter = _Painter(image, u, palette, on_dark_bg)
    for element in elements:
        painter.element(element)
    return image


def paint_transition(width: int, height: int, u: float, status: Element, dark: bool) -> Image.Image:
    """The frame shown while a screen change is in progress: status bar and a loading hint."""
    palette = DARK if dark else LIGHT
    image = Image.new("RGB", (width, height), palette.bg)
    painter = _Painter(image, u, palette, False)
    painter.element(status)
    cx, cy, r = width / 2, height / 2, painter.px(60)
    painter.draw.arc((cx - r, cy - r, cx + r, cy + r), 200, 500, fill=palette.accent, width=painter.px(10))
    painter.text((0, int(cy + r + painter.px(30)), width, int(cy + r + painter.px(110))), "Loading…", 40, palette.muted)
    return image
