"""Annotated UI boxes as fractions of the screen, shared by the scoring conventions."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["EPS", "Box", "augment_box"]

#: Slack of the project's own variants (``androidcontrol``, ``qwen``) at their thresholds, so
#: pixel -> fraction arithmetic does not push a point lying exactly on one to the wrong side
#: (540/1000 - 500/1000 = 0.04000000000000004). The reference ports have none.
EPS = 1e-9


class Box(NamedTuple):
    """An annotated UI element: ``(top, left, height, width)`` as fractions of the screen."""

    top: float
    left: float
    height: float
    width: float

    @classmethod
    def from_pixels(cls, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
        """From pixel corners ``(x0, y0)``-``(x1, y1)`` on a ``width`` x ``height`` screen."""
        return cls(y0 / height, x0 / width, (y1 - y0) / height, (x1 - x0) / width)

    def contains(self, y: float, x: float) -> bool:
        """Inclusive of the edges, with the variants' slack :data:`EPS`."""
        return (
            self.top - EPS <= y <= self.top + self.height + EPS and self.left - EPS <= x <= self.left + self.width + EPS
        )


def augment_box(box: Box, added: float) -> Box:
    """Enlarge ``box`` by ADDING ``added`` times its height and width, centred, clipped as AITW does.

    ``added=1.4`` is AITW's augmentation (2.4x in total); ``added=0.2`` is the 1.2x of the
    project's ``qwen`` variant. Top/left are clipped at 0 and height/width at 1.
    """
    dh, dw = added * box.height, added * box.width
    return Box(
        max(0.0, box.top - dh / 2), max(0.0, box.left - dw / 2), min(1.0, box.height + dh), min(1.0, box.width + dw)
    )
