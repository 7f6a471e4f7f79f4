"""Sample quality of a study point, and its calibration: the floor (real vs real) and the ceiling (noise).

    >>> from analysis.quality import QUALITY_METRICS
    >>> QUALITY_METRICS["swd"].lower_is_better, QUALITY_METRICS["recognisable"].lower_is_better
    (True, False)

``quality(reference, images, data, resolution)`` scores generated images against real ones: SWD
always, and on the embedded shapes data the classifier metrics of ``analysis.shape_classifier``.
A number alone says little, so ``calibration(data, resolution, count)`` scores, with the same
function and the same set size, two disjoint sets of real images (the ``data`` row of a study
table: the best a model can do at this sample count) and i.i.d. Gaussian noise clipped to the
image range (the ``noise`` row: what an untrained model draws). It is computed once per
(dataset, resolution, count) and cached under ``$USM_BENCH_CACHE/calibration/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from usm.data.shapes import VARIANTS, cache_dir

VERSION = 1


@dataclass(frozen=True)
class Metric:
    label: str
    lower_is_better: bool
    digits: int = 3


QUALITY_METRICS = {
    "swd": Metric("SWD (x1e3)", True),
    "shape_fd": Metric("shape FD", True),
    "recognisable": Metric("recognisable", False, 2),
    "coverage": Metric("coverage", False, 2),
}


def _images(data: str, resolution: int, start: int, count: int) -> np.ndarray:
    from usm.data.datasets import open_dataset

    dataset = open_dataset(data, resolution)
    stop = min(start + count, len(dataset))
    return np.stack([((dataset[(i, False)]["x"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
                     for i in range(start, stop)]) if stop > start else np.zeros((0,), np.uint8)


def reference_images(data: str, resolution: int, count: int) -> np.ndarray:
    """The first ``count`` training images (uint8 (N, H, W, C)): what samples are compared with."""
    return _images(data, resolution, 0, count)


def quality(reference: np.ndarray, images: np.ndarray, data: str, resolution: int) -> dict:
    from analysis.swd import swd

    out = {"swd": swd(reference, images, seed=0)["mean"]}
    if data in VARIANTS:
        from analysis.shape_classifier import shape_metrics

        out.update(shape_metrics(reference, images, data, resolution))
    return out


def _cache_path(data: str, resolution: int, count: int) -> Path:
    name = data if data in VARIANTS else hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "calibration" / f"{name}-{resolution}px-n{count}-v{VERSION}.json"


def calibration(data: str, resolution: int, count: int) -> dict:
    """{"data": metrics of real vs real, "noise": metrics of noise vs real, ...}; "data" is None when
    the dataset holds fewer than 2 x count images."""
    path = _cache_path(data, resolution, count)
    if path.exists():
        return json.loads(path.read_text())
    reference = reference_images(data, resolution, count)
    other = _images(data, resolution, count, count)
    noise = np.random.default_rng(0).standard_normal(reference.shape).clip(-1, 1)
    noise = ((noise + 1) * 127.5).round().astype(np.uint8)
    record = {"data": quality(reference, other, data, resolution) if len(other) == count else None,
              "noise": quality(reference, noise, data, resolution), "dataset": data, "resolution": resolution,
              "count": count, "reference": f"the first {count} training images",
              "floor_set": f"training images {count}-{2 * count - 1}"}
    if data in VARIANTS:
        from analysis.shape_classifier import load_classifier

        record["classifier"] = load_classifier(data, resolution)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    return record
