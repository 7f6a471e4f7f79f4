"""Image folders (flat or one sub-folder per class, searched recursively), ADM centre crop.

    >>> from usm.data.folder import center_crop_arr
    >>> from PIL import Image
    >>> center_crop_arr(Image.new("RGB", (300, 200)), 64).shape
    (64, 64, 3)

Every file is checked when the dataset is opened (its header only: fast): a missing or empty
folder, an unreadable file or an image smaller than the training resolution stops with an error
that names the path(s) and the fix. ``skip_bad=True`` (``--skip-bad-images``) instead leaves
those files out and reports how many were skipped -- nothing is ever dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


class DataError(ValueError):
    """Bad training data: the message names the path and what to do."""


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # PIL's modes for 16-bit gray (PNG, TIFF)
UNSUPPORTED_MODES = {"F": "32-bit float (PIL mode F) has no defined range; convert it to 8- or 16-bit"}


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, from any of PIL's modes:
    - 16-bit gray (and 32-bit integer): PIL's ``convert("RGB")`` clips it to 255 (a folder of 16-bit
      PNGs trained as white squares), so 0-65535 maps to 0-255 first;
    - transparency (RGBA, LA, PA, a palette with a transparent index): flattened onto white, which
      is what a viewer shows; ``convert("RGB")`` alone brings back the colours under transparent pixels;
    - palette, bilevel, CMYK, YCbCr, LAB, HSV: PIL's own conversion;
    - 32-bit float (``F``) has no agreed range: DataError, naming the file."""
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(values.round().clip(0, 255).astype(np.uint8), "L")
    if image.mode in UNSUPPORTED_MODES:
        raise DataError(f"{getattr(image, 'filename', '') or 'an image'}: {UNSUPPORTED_MODES[image.mode]}")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(flat, rgba).convert("RGB")
    return image.convert("RGB")


def center_crop_arr(image: Image.Image, resolution: int) -> np.ndarray:
    """ADM's centre crop: box-downsample by 2 while the short side is >= 2x, bicubic to the
    resolution, then crop the centre square. Returns uint8 (H, W, 3)."""
    while min(image.size) >= 2 * resolution:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = resolution / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(to_rgb(image))
    top, left = (arr.shape[0] - resolution) // 2, (arr.shape[1] - resolution) // 2
    return arr[top: top + resolution, left: left + resolution]


def scan_folder(root: str | Path, resolution: int, skip_bad: bool = False):
    """(files, labels, class_names, skipped). Labels come from the first path component when every
    image sits in a class sub-folder; a flat folder (or a mix) has no labels (all 0, no classes)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass --data with a folder of images, "
                        "or --data shapes for the embedded dataset")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"data folder {root} holds no images ({', '.join(sorted(EXTENSIONS))}): "
                        "point --data at the folder that contains them")
    bad = []
    for path in files:
        try:
            with Image.open(path) as image:
                (width, height), mode = image.size, image.mode
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:  # a bomb: too many pixels
            bad.append((path, f"unreadable ({type(exc).__name__})"))
            continue
        if mode in UNSUPPORTED_MODES:
            bad.append((path, UNSUPPORTED_MODES[mode]))
            continue
        if min(width, height) < resolution:
            bad.append((path, f"{width}x{height} is smaller than the resolution {resolution}"))
    if bad and not skip_bad:
        listing = "\n  ".join(f"{p}: {why}" for p, why in bad[:10])
        raise DataError(f"{len(bad)} of {len(files)} files in {root} cannot be used:\n  {listing}"
                        f"{' ...' if len(bad) > 10 else ''}\nRemove or fix them, or pass --skip-bad-images "
                        "to leave them out (the count is logged).")
    bad_paths = {p for p, _ in bad}
    files = [p for p in files if p not in bad_paths]
    if not files:
        raise DataError(f"no usable images left in {root} after skipping {len(bad)} bad files")
    parts = [p.relative_to(root).parts for p in files]
    class_names = sorted({q[0] for q in parts}) if all(len(q) > 1 for q in parts) else []
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[q[0]] if class_names else 0 for q in parts], dtype=np.int64)
    return files, labels, class_names, len(bad)
