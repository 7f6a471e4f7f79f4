"""UCI handwritten digits (scikit-learn's ``load_digits``): real data inside a wheel, no download.

    >>> from usm.data.digits import digit_images, HELD_OUT
    >>> images, labels = digit_images(16)
    >>> images.shape, images.dtype, len(images) + HELD_OUT
    ((1497, 16, 16, 1), dtype('uint8'), 1797)

1,797 scans of digits written by 43 people, 8x8 pixels of 17 gray levels (0-16; Alpaydin and
Kaynak, UCI). They are scaled to 0-255 and upsampled to 16x16 (bilinear), a white digit on black.
The last ``HELD_OUT`` images (written by people the first ones do not include: the set is ordered
by writer block) are never trained on: they are the study tables' "data" row, real images the
model has not seen.
"""

from __future__ import annotations

import functools

import numpy as np

CLASSES = tuple(str(d) for d in range(10))
SIZES = (8, 16, 32)
HELD_OUT = 300


@functools.lru_cache(maxsize=len(SIZES))
def _all(size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # a dependency of usm-bench: only a broken install lacks it
        raise ImportError("the digits dataset comes with scikit-learn: pip install scikit-learn") from exc
    import torch
    import torch.nn.functional as F

    digits = load_digits()
    images = torch.from_numpy(digits.images * (255 / 16)).float()[:, None]  # (N, 1, 8, 8)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images, digits.target.astype(np.int64)


def digit_images(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The training digits: uint8 (N, size, size, 1) and labels 0-9 (shared arrays: do not modify)."""
    images, labels = _all(size)
    return images[:-HELD_OUT], labels[:-HELD_OUT]


def held_out_digits(count: int, size: int = 16) -> np.ndarray:
    """Up to ``count`` (at most ``HELD_OUT``) digits no model trains on."""
    return _all(size)[0][-HELD_OUT:][:count]
