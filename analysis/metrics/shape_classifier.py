"""A second quality metric for the embedded shapes data: a small classifier trained once on real shapes.

    >>> from analysis.metrics.shape_classifier import ShapeNet
    >>> import torch
    >>> ShapeNet(1)(torch.zeros(2, 1, 16, 16))[0].shape
    torch.Size([2, 5])

SWD compares patch statistics: on 16x16 images a sample of soft blobs on the right background can
score near the real-vs-real floor while showing no shape at all. A classifier trained on the real
shapes asks what a person asks: is this a disc, a square, a triangle or a ring? For a set of
(unconditional) samples it reports

- ``recognisable``: the fraction of images it gives one of the four shapes with probability >= 0.9;
- ``class_coverage``: the entropy of the mean probabilities of the four shapes over log(4) (1 = all four
  equally often);
- ``shape_fd``: the Frechet distance between its 64-d penultimate features of the samples and of
  real images (FID's formula in this classifier's feature space).

The classifier is deterministic (fixed seeds, one thread), trained on the dataset's 4,096 training
images with flips and slight noise (std up to 0.1), plus a fifth class, "no shape" (i.i.d. and
structured noise, random blobs, real images drowned in noise or blurred away), so that it does not
call noise a disc with confidence. It is checked on 1,024
held-out images drawn with another seed (``held_out_accuracy``) and
cached under ``$USM_BENCH_CACHE/classifiers/`` with its held-out accuracy.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from analysis.metrics.frechet import fitted_frechet
from usm.data.shapes import CLASSES, HELD_OUT_SEED, RENDERER, VARIANTS, load_shapes, render_shapes
from usm.files import atomic_save, atomic_write, cache_dir

VERSION = 3
HELD_OUT_COUNT = 1024
CONFIDENT = 0.9


class ShapeNet(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, len(CLASSES) + 1)  # the four shapes and "no shape"

    def forward(self, x):
        """(logits, 64-d features) of images in [-1, 1]."""
        features = self.features(x)
        return self.head(features), features


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _negatives(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images that show no shape, shaped like ``x`` (real images in [-1, 1]): i.i.d. noise, noise with
    spatial structure, random smooth blobs on the data's kind of background, real images drowned in
    noise (std 0.6-1.2), and real images blurred out of recognition."""
    n, c, h, w = x.shape
    kind = torch.randint(0, 5, (n, 1, 1, 1), generator=gen)
    noise = torch.randn(x.shape, generator=gen).clamp(-1, 1)
    coarse = F.interpolate(torch.randn(n, c, h // 2, w // 2, generator=gen), size=(h, w), mode="bilinear",
                           align_corners=False)
    structured = (coarse + 0.5 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    field = F.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(h, w), mode="bicubic", align_corners=False)
    blob = (field > torch.rand(n, 1, 1, 1, generator=gen) * 1.2).float()
    low, high = torch.rand(n, 1, 1, 1, generator=gen) * 0.7 - 0.9, torch.rand(n, 1, 1, 1, generator=gen) * 0.6 + 0.4
    blobs = (low + (high - low) * blob).expand(n, c, h, w)
    drown = 0.6 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
    drowned = (x + drown * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    blurred = F.interpolate(F.avg_pool2d(x, 4), size=(h, w), mode="bilinear", align_corners=False)
    return torch.stack([noise, structured, blobs, drowned, blurred])[kind.flatten(), torch.arange(n)]


def _train(images: np.ndarray, labels: np.ndarray, steps: int = 800, batch: int = 64) -> ShapeNet:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x_all, y_all = to_input(images), torch.from_numpy(labels)
    model = ShapeNet(x_all.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        x, y = x_all[idx], y_all[idx].clone()
        flip = torch.rand(batch, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        other = torch.rand(batch, generator=gen) < 0.3  # about a third of each batch: no shape at all
        x = torch.where(other[:, None, None, None], _negatives(x, gen), x)
        y[other] = len(CLASSES)
        x = x + 0.1 * torch.rand(batch, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
        loss = F.cross_entropy(model(x)[0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def classifier_dir():
    return cache_dir() / "classifiers"


def load_classifier(data: str, resolution: int) -> tuple[ShapeNet, dict]:
    """The cached classifier of an embedded dataset (trained on first use) and its record."""
    if data not in VARIANTS:
        raise ValueError(f"the shape classifier exists for the embedded datasets {sorted(VARIANTS)}, not {data!r}")
    path = classifier_dir() / f"{data}-{resolution}px-{RENDERER}-v{VERSION}.pt"  # trained on these shapes
    if path.exists():
        saved = torch.load(path, weights_only=True)
        model = ShapeNet(saved["channels"])
        model.load_state_dict(saved["state"])
        return model.eval(), saved["record"]
    gray = VARIANTS[data]
    images, labels = load_shapes(size=resolution, gray=gray)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights on every machine size
    try:
        model = _train(images, labels)
    finally:
        torch.set_num_threads(threads)
    held_images, held_labels = render_shapes(HELD_OUT_COUNT, HELD_OUT_SEED, resolution, gray)
    with torch.no_grad():
        accuracy = float((model(to_input(held_images))[0].argmax(1).numpy() == held_labels).mean())
    record = {"data": data, "resolution": resolution, "held_out_accuracy": accuracy,
              "held_out": f"{HELD_OUT_COUNT} images drawn with seed {HELD_OUT_SEED}", "version": VERSION}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda f: torch.save({"channels": images.shape[-1], "state": model.state_dict(),
                                            "record": record}, f))
    atomic_write(path.with_suffix(".json"), json.dumps(record, indent=2))
    return model, record


@functools.lru_cache(maxsize=4)
def training_manifold(data: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(classifier features, k-NN radii) of the whole training set: the real manifold in feature space."""
    from analysis.metrics.manifold import radii

    model, _ = load_classifier(data, resolution)
    images, _ = load_shapes(size=resolution, gray=VARIANTS[data])
    with torch.no_grad():
        real = model(to_input(images))[1].double().numpy()
    return real, radii(real)


def shape_scorer(reference: np.ndarray, images: np.ndarray, data: str, resolution: int):
    """A function of sample indices that gives ``shape_metrics`` of ``images[index]``, with the
    classifier run once (bootstrap resamplings cost no forward passes)."""
    from analysis.metrics.manifold import Resampled

    model, _ = load_classifier(data, resolution)
    with torch.no_grad():
        logits, features = model(to_input(images))
        _, ref_features = model(to_input(reference))
    probs = logits.softmax(1)[:, :len(CLASSES)].double().numpy()  # the "no shape" column is left out
    features, ref_features = features.double().numpy(), ref_features.double().numpy()
    real, real_radii = training_manifold(data, resolution)
    manifold = Resampled(real, features, real_radii=real_radii)

    def score(index: np.ndarray) -> dict:
        mean = probs[index].mean(0)
        mean = np.clip(mean / max(mean.sum(), 1e-12), 1e-12, None)
        return {"recognisable": float((probs[index].max(1) >= CONFIDENT).mean()),
                "class_coverage": float(-(mean * np.log(mean)).sum() / math.log(len(CLASSES))),
                "shape_fd": fitted_frechet(features[index], ref_features),
                **{f"shape_{name}": value for name, value in manifold(index).items()}}

    return score


def shape_metrics(reference: np.ndarray, images: np.ndarray, data: str, resolution: int) -> dict:
    """recognisable, class_coverage and shape_fd of ``images`` (uint8 (N, H, W, C)) against real
    ``reference``; shape_precision, shape_recall, shape_density and shape_coverage against the whole
    training set, in the classifier's feature space (``analysis.metrics.manifold``)."""
    return shape_scorer(reference, images, data, resolution)(np.arange(len(images)))
