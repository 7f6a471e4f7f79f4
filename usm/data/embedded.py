"""The datasets that ship with usm-bench (no download), by name: ``EMBEDDED``.

    >>> from usm.data.embedded import EMBEDDED
    >>> sorted(EMBEDDED)
    ['digits', 'shapes', 'shapes-gray']
    >>> EMBEDDED["digits"].images(16)[0].shape
    (1497, 16, 16, 1)

- ``shapes`` / ``shapes-gray``: one drawn shape per image (``usm.data.shapes``), 16 or 32 px;
  the shape classifier's metrics exist for them;
- ``digits``: UCI handwritten digits from scikit-learn (``usm.data.digits``), real data nobody here
  drew, 8, 16 or 32 px.

Each gives its training images and labels at a size, and real images no model trains on (the
"data" row of a study table). Anything else passed as ``--data`` is a folder of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from usm.data import digits, shapes


@dataclass(frozen=True)
class Embedded:
    name: str
    sizes: tuple[int, ...]
    classes: tuple[str, ...]
    images: Callable[[int], tuple[np.ndarray, np.ndarray]]  # size -> uint8 (N, H, W, C), labels (N,)
    held_out: Callable[[int, int], np.ndarray]  # (count, size) -> uint8 images no model trains on
    held_out_text: str  # how the held-out images were obtained, for the tables' notes


def _shapes(gray: bool) -> Embedded:
    name = "shapes-gray" if gray else "shapes"
    return Embedded(name, shapes.SIZES, shapes.CLASSES,
                    lambda size: shapes.load_shapes(size=size, gray=gray),
                    lambda count, size: shapes.render_shapes(count, shapes.HELD_OUT_SEED, size, gray)[0],
                    "images drawn with another seed")


EMBEDDED: dict[str, Embedded] = {
    "shapes": _shapes(False),
    "shapes-gray": _shapes(True),
    "digits": Embedded("digits", digits.SIZES, digits.CLASSES, digits.digit_images, digits.held_out_digits,
                       f"of the last {digits.HELD_OUT} digits of scikit-learn's set (never trained on)"),
}
