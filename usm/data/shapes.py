"""The embedded datasets: procedurally drawn shapes, 32x32 or 16x16, colour or gray, with class labels.

    >>> from usm.data.shapes import render_shapes, CLASSES
    >>> images, labels = render_shapes(8, seed=0)
    >>> images.shape, images.dtype, sorted(set(labels.tolist())) <= list(range(len(CLASSES)))
    ((8, 32, 32, 3), dtype('uint8'), True)

It needs no download: ``load_shapes()`` draws it once (deterministically, from a seed) and caches
it as one ``.npz`` under ``$USM_BENCH_CACHE`` (default ``~/.cache/usm-bench``). Each image is one
shape -- the class: disc, square, triangle or ring -- in a saturated random colour, with a random
size and position, on a plain grey background; 2x supersampling smooths the edges. Small enough
to train on a CPU in minutes, structured enough that samples can be judged by eye.

``shapes`` is the colour set; ``shapes-gray`` draws the same scenes with one channel (a bright
shape on a dark background), which the smoke study uses at 16x16 (see ``experiments/grids``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from usm.files import atomic_save, cache_dir, remove_dead_temps

CLASSES = ("disc", "square", "triangle", "ring")
DEFAULT_COUNT, SIZE = 4096, 32
HELD_OUT_SEED = 1  # the seed of the scenes no model trains on (the tables' "data" row, the classifier's test set)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _mask(kind: str, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Inside-test of a shape centred at 0 with the given radius, on coordinate grids x, y."""
    if kind == "disc":
        return x ** 2 + y ** 2 <= radius ** 2
    if kind == "square":
        return (np.abs(x) <= radius * 0.85) & (np.abs(y) <= radius * 0.85)
    if kind == "triangle":  # pointing up (image rows grow downwards, hence -y)
        up = -y
        return (up <= radius * 0.8) & (up >= -radius) & (np.abs(x) <= (radius * 0.8 - up) * 0.6)
    return (x ** 2 + y ** 2 <= radius ** 2) & (x ** 2 + y ** 2 >= (radius * 0.55) ** 2)  # ring


def scenes(count: int, seed: int = 0, size: int = SIZE) -> dict[str, np.ndarray]:
    """What each image shows: label, radius, centre (cx, cy), hue, saturation, value, background
    level; a pure function of the seed (``render_shapes`` draws these, the captions describe them)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), size=count)
    fields = {name: np.empty(count) for name in ("radius", "cx", "cy", "hue", "saturation", "value", "background")}
    for i in range(count):  # the order of the draws defines the dataset: keep it
        radius = rng.uniform(0.2, 0.36) * size
        fields["radius"][i] = radius
        fields["cx"][i], fields["cy"][i] = rng.uniform(radius, size - radius, size=2)
        fields["hue"][i], fields["saturation"][i], fields["value"][i] = \
            rng.uniform(), rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0)
        fields["background"][i] = rng.uniform(0.1, 0.45)
    return {"label": labels.astype(np.int64), **fields}


def render_shapes(count: int, seed: int = 0, size: int = SIZE, gray: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (count, size, size, 3 or 1 if gray), labels int64 (count,)), a pure function of the seed.
    Gray images draw a bright shape (0.7-1.0) on a dark background (0.05-0.4) from the same scenes."""
    scale = 2  # supersampling factor
    coords = (np.arange(size * scale) + 0.5) / scale
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    channels = 1 if gray else 3
    images = np.empty((count, size, size, channels), dtype=np.uint8)
    scene = scenes(count, seed, size)
    for i, label in enumerate(scene["label"]):
        colour = _hsv_to_rgb(scene["hue"][i], scene["saturation"][i], scene["value"][i])
        background = np.full(3, scene["background"][i])
        if gray:
            colour, background = colour.max(keepdims=True) * 0.3 / 0.25 - 0.2, background[:1] - 0.05
        inside = _mask(CLASSES[label], gx - scene["cx"][i], gy - scene["cy"][i], scene["radius"][i])[..., None]
        canvas = np.where(inside, colour, background)
        canvas = canvas.reshape(size, scale, size, scale, channels).mean(axis=(1, 3))
        images[i] = np.round(canvas * 255).astype(np.uint8)
    return images, scene["label"]


SIZES = (16, 32)
RENDERER = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]  # a cache drawn by other code is not read
VARIANTS = {"shapes": False, "shapes-gray": True}  # dataset name -> gray


def load_shapes(count: int = DEFAULT_COUNT, seed: int = 0, size: int = SIZE, gray: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """The cached dataset, drawn and written atomically on first use."""
    path = cache_dir() / f"shapes-{RENDERER}-n{count}-s{size}{'-gray' if gray else ''}-seed{seed}.npz"
    if not path.exists():
        images, labels = render_shapes(count, seed, size, gray)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(path.parent)
        atomic_save(path, np.savez, images=images, labels=labels)
    with np.load(path) as data:
        return data["images"], data["labels"]


def export_folder(root: str | Path, count: int = DEFAULT_COUNT, seed: int = 0) -> Path:
    """Write the dataset as PNGs in class sub-folders (a reference set for FID, or an example)."""
    from PIL import Image

    images, labels = load_shapes(count, seed)
    root = Path(root)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save(folder / f"{i:05d}.png", Image.fromarray(image).save, format="PNG")
    return root
