"""Sample quality of a study point, and its calibration: the floor (held-out real images) and the ceiling (noise).

    >>> from analysis.metrics.quality import QUALITY_METRICS
    >>> QUALITY_METRICS["swd"].lower_is_better, QUALITY_METRICS["precision"].lower_is_better
    (True, False)

``quality(reference, images, data, resolution)`` scores generated images against real ones:

- SWD against ``reference`` (as many real images as samples);
- precision, recall, density and coverage (``analysis.metrics.manifold``) in pixel space against the
  training set (images up to ``PIXEL_MANIFOLD_MAX_SIDE`` px; larger ones are compared in a
  network's feature space through ``analysis.metrics.fid`` instead);
- on the embedded shapes data, the classifier metrics of ``analysis.metrics.shape_classifier``.

A number alone says little, so ``calibration(data, resolution, count)`` scores, with the same
function and the same set size, real images the model never trained on (the ``data`` row of a
study table: the best a model can do at this sample count) and i.i.d. Gaussian noise clipped to
the image range (the ``noise`` row: what an untrained model draws). Held out means: for the
embedded data, images drawn with another seed; for a folder, training images ``count`` to
``2 count - 1``, which the pixel-space manifold then leaves out. It is computed once per
(dataset, resolution, count) and cached under ``$USM_BENCH_CACHE/calibration/``.
``bootstrap(...)`` gives each metric's spread over resamplings of the sample set.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from usm.data.embedded import EMBEDDED
from usm.data.shapes import VARIANTS
from usm.files import atomic_write, cache_dir, read_cache

VERSION = 3  # 2: held-out floor set, precision / recall / density / coverage; 3: in classifier features too
PIXEL_MANIFOLD_MAX_SIDE = 64  # beyond this, pixel distances measure texture and alignment, not content
MANIFOLD_MAX_REFERENCE = 20_000  # real images that span the pixel-space manifold (the first ones)
BOOTSTRAP_ROUNDS = 100


@dataclass(frozen=True)
class Metric:
    label: str
    lower_is_better: bool
    digits: int = 3


QUALITY_METRICS = {
    "precision": Metric("precision", False, 2),
    "recall": Metric("recall", False, 2),
    "density": Metric("density", False, 2),
    "coverage": Metric("coverage", False, 2),
    "swd": Metric("SWD (x1e3)", True),
    "shape_fd": Metric("shape FD", True),
    "recognisable": Metric("recognisable", False, 2),
    "class_coverage": Metric("class coverage", False, 2),
    "shape_precision": Metric("shape precision", False, 2),
    "shape_recall": Metric("shape recall", False, 2),
    "shape_density": Metric("shape density", False, 2),
    "shape_coverage": Metric("shape coverage", False, 2),
}

# The study tables' headline: the metrics that passed the validation on sets of known order (python -m
# analysis validate-metrics; the record: results/reference/metrics/validation.md, kept equal by a test).
# SWD, the pixel precision and the classifier's "recognisable" failed it (docs/metrics.md says how).
HEADLINE = ("shape_coverage", "shape_density")


def _images(data: str, resolution: int, start: int, count: int) -> np.ndarray:
    from usm.data.datasets import open_dataset

    if data in EMBEDDED:  # the embedded data's own uint8 array (what the dataset serves, without the round trip)
        return EMBEDDED[data].images(resolution)[0][start:start + count]
    dataset = open_dataset(data, resolution)
    stop = min(start + count, len(dataset))
    return np.stack([((dataset[(i, False)]["x"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
                     for i in range(start, stop)]) if stop > start else np.zeros((0,), np.uint8)


def reference_images(data: str, resolution: int, count: int) -> np.ndarray:
    """The first ``count`` training images (uint8 (N, H, W, C)): what samples are compared with."""
    return _images(data, resolution, 0, count)


def held_out_images(data: str, resolution: int, count: int) -> np.ndarray:
    """``count`` real images the model never trained on: for the embedded data, its own held-out set
    (``usm.data.embedded``); for a folder, training images count .. 2 count - 1 (which
    ``manifold_reference`` then leaves out). Fewer than ``count`` when there are not enough."""
    if data in EMBEDDED:
        return EMBEDDED[data].held_out(count, resolution)
    return _images(data, resolution, count, count)


def manifold_reference(data: str, resolution: int, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(pixel features, k-NN radii) of the training images that span the real manifold, without the
    held-out floor set of ``count`` images (a folder's; the embedded data's is kept apart, so one
    manifold serves every count); None above ``PIXEL_MANIFOLD_MAX_SIDE`` px."""
    if resolution > PIXEL_MANIFOLD_MAX_SIDE:
        return None
    return _manifold(data, resolution, 0 if data in EMBEDDED else count)


@functools.lru_cache(maxsize=4)
def _manifold(data: str, resolution: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    from analysis.metrics.manifold import features, radii
    from usm.data.datasets import open_dataset

    total = min(len(open_dataset(data, resolution)), MANIFOLD_MAX_REFERENCE)
    if data in EMBEDDED:
        images = _images(data, resolution, 0, total)
    else:  # leave the floor set (count .. 2 count - 1) out
        parts = [_images(data, resolution, 0, count), _images(data, resolution, 2 * count, total)]
        images = np.concatenate([part for part in parts if len(part)])
    real = features(images)
    return real, radii(real)


def scorer(reference: np.ndarray, images: np.ndarray, data: str, resolution: int):
    """Every metric but SWD of ``images[index]``, as a function of ``index``: the distances and the
    classifier's outputs are computed once, so resamplings of the samples are cheap."""
    parts = []
    manifold = manifold_reference(data, resolution, len(images))
    if manifold is not None:
        from analysis.metrics.manifold import Resampled, features

        real, real_radii = manifold
        parts.append(Resampled(real, features(images), real_radii=real_radii))
    if data in VARIANTS:
        from analysis.metrics.shape_classifier import shape_scorer

        parts.append(shape_scorer(reference, images, data, resolution))
    return lambda index: {name: value for part in parts for name, value in part(index).items()}


def quality(reference: np.ndarray, images: np.ndarray, data: str, resolution: int, swd: bool = True) -> dict:
    """Every quality metric of ``images`` that applies to the data (``swd=False`` leaves SWD out)."""
    out = {}
    if swd:
        from analysis.metrics.swd import swd as sliced

        out["swd"] = sliced(reference, images, seed=0)["mean"]
    return {**out, **scorer(reference, images, data, resolution)(np.arange(len(images)))}


def bootstrap(reference: np.ndarray, images: np.ndarray, data: str, resolution: int,
              rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> dict:
    """{metric: std over ``rounds`` resamplings (with replacement) of the sample set}: the part of a
    run's score that is due to which samples were drawn, not to the model. SWD is not resampled
    (one SWD takes seconds)."""
    rng = np.random.default_rng(seed)
    score = scorer(reference, images, data, resolution)
    scores = [score(rng.integers(0, len(images), len(images))) for _ in range(rounds)]
    return {name: float(np.std([s[name] for s in scores], ddof=1)) for name in scores[0]}


def _cache_path(data: str, resolution: int, count: int) -> Path:
    """Keyed by the images' content (``ImageDataset.fingerprint``), not by where they are: a folder
    whose images changed is calibrated again, and two copies of one folder share a calibration."""
    from usm.data.datasets import open_dataset

    name = data if data in EMBEDDED else "folder"
    content = open_dataset(data, resolution).fingerprint
    return cache_dir() / "calibration" / f"{name}-{resolution}px-n{count}-{content}-v{VERSION}.json"


def noise_images(shape: tuple, seed: int = 0) -> np.ndarray:
    """i.i.d. Gaussian noise clipped to the image range, as uint8: what an untrained model draws."""
    noise = np.random.default_rng(seed).standard_normal(shape).clip(-1, 1)
    return ((noise + 1) * 127.5).round().astype(np.uint8)


def calibration(data: str, resolution: int, count: int) -> dict:
    """{"data": metrics of held-out real vs real, "noise": metrics of noise vs real, ...}; "data" is
    None when a folder dataset holds fewer than 2 x count images."""
    path = _cache_path(data, resolution, count)
    cached = read_cache(path)
    if cached is not None:
        return cached
    reference = reference_images(data, resolution, count)
    other = held_out_images(data, resolution, count)
    noise = noise_images(reference.shape)
    floor_set = (f"{count} {EMBEDDED[data].held_out_text}" if data in EMBEDDED
                 else f"training images {count}-{2 * count - 1}, left out of the pixel manifold")
    record = {"data": quality(reference, other, data, resolution) if len(other) == count else None,
              "noise": quality(reference, noise, data, resolution), "dataset": data, "resolution": resolution,
              "count": count, "reference": f"the first {count} training images (SWD, classifier), "
                                            "the training set (precision, density)",
              "floor_set": floor_set}
    if data in VARIANTS:
        from analysis.metrics.shape_classifier import load_classifier

        record["classifier"] = load_classifier(data, resolution)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2))
    return record
