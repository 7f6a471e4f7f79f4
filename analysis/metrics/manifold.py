"""Precision, recall, density and coverage: how much of the samples lies on the data, and how much of
the data the samples reach, from k-nearest-neighbour balls around each point.

    >>> import numpy as np
    >>> real = np.random.default_rng(0).random((200, 16))
    >>> same = prdc(real, real[:50], k=3)
    >>> same["precision"], same["density"] >= 1.0
    (1.0, True)
    >>> prdc(real, real[:50] + 10.0, k=3)["precision"]
    0.0

Definitions (features are rows; Euclidean distances; r_k(x) = distance from x to its k-th nearest
neighbour in its own set, itself not counted):

- **precision** (Kynkaanniemi et al. 2019): the share of samples that fall inside the ball of radius
  r_k(x) around at least one real image x -- "is this sample something the data could hold?";
- **density** (Naeem et al. 2020): the mean number of real balls a sample falls in, divided by k
  (about 1 for samples distributed like the data; it does not saturate at 1 and is less fooled by
  one outlying real image with a huge ball);
- **recall**: the share of real images inside the ball r_k(y) of at least one sample y;
- **coverage** (Naeem et al.): the share of real images whose own ball r_k(x) holds a sample.

Which real set: precision and density ask whether samples lie on the data, so they use every real
image given (the whole training set: the larger the set, the finer its manifold). Recall and
coverage ask how much of the data M samples reach; M samples cannot reach 4,096 images, so those two
use the first M real images only (``balanced=True``, Naeem et al.'s setting N = M), which makes a
held-out real set score near the top whatever M is. In pixel space (the embedded data) the features
are the pixels in [0, 1]; on real datasets the same definitions are computed by torch-fidelity in
the Inception feature space (``analysis.metrics.fid``).
"""

from __future__ import annotations

import numpy as np
import torch

K = 3  # Kynkaanniemi et al.'s and torch-fidelity's neighbourhood size


def features(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) -> pixel features (N, H*W*C) in [0, 1], float32."""
    return np.asarray(images, np.float32).reshape(len(images), -1) / 255.0


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # |a|^2 - 2ab + |b|^2 through a matrix product (BLAS: the 4,096 x 4,096 training radii in a
    # fraction of a second), in float64, where its rounding (~1e-12 relative) cannot move a point
    # across a ball's edge the way float32's (~1e-4 after the cancellation) could
    return torch.cdist(a.double(), b.double(), compute_mode="use_mm_for_euclid_dist")


def radii(points: np.ndarray, k: int = K, block: int = 1024) -> np.ndarray:
    """r_k of every row: the distance to its k-th nearest other row."""
    x = torch.from_numpy(np.asarray(points))
    if len(x) <= k:
        raise ValueError(f"{len(x)} points cannot have a {k}-th nearest neighbour: give more than {k}")
    out = [_distances(x[i:i + block], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), block)]
    return torch.cat(out).numpy()  # k + 1: the point itself is its own nearest neighbour, at 0


def inside_counts(queries: np.ndarray, centres: np.ndarray, centre_radii: np.ndarray,
                  block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(for each query, how many balls hold it; for each centre, whether its ball holds a query)."""
    q, c, r = (torch.from_numpy(np.asarray(a)) for a in (queries, centres, centre_radii))
    per_query, reached = [], torch.zeros(len(c), dtype=torch.bool)
    for i in range(0, len(q), block):
        inside = _distances(q[i:i + block], c) <= r[None]
        per_query.append(inside.sum(1))
        reached |= inside.any(0)
    return torch.cat(per_query).numpy(), reached.numpy()


class Resampled:
    """``prdc(real, fake[index])`` for any ``index`` (a bootstrap resampling of the samples, say),
    from distances computed once: per resampling only the samples' own k-NN radii are re-sorted.

        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.random((50, 4)), rng.random((20, 4))
        >>> index = rng.integers(0, 20, 20)
        >>> Resampled(real, fake)(index) == prdc(real, fake[index])
        True
    """

    def __init__(self, real: np.ndarray, fake: np.ndarray, k: int = K, real_radii: np.ndarray | None = None):
        real, fake = np.asarray(real), np.asarray(fake)
        real_radii = radii(real, k) if real_radii is None else real_radii
        self.k = k
        self.counts, _ = inside_counts(fake, real, real_radii)  # real balls holding each sample
        small = real[:len(fake)]
        to_small = _distances(torch.from_numpy(fake), torch.from_numpy(small)).numpy()  # (samples, small)
        self.in_small = to_small <= radii(small, k)[None]  # sample i inside the ball of real image j
        self.small_to_fake = to_small.T
        self.between = _distances(torch.from_numpy(fake), torch.from_numpy(fake)).numpy()

    def __call__(self, index: np.ndarray) -> dict:
        counts = self.counts[index]
        fake_radii = np.sort(self.between[np.ix_(index, index)], axis=1)[:, self.k]  # column 0: the sample itself
        held = (self.small_to_fake[:, index] <= fake_radii[None]).any(1)
        return {"precision": float((counts > 0).mean()), "density": float(counts.mean() / self.k),
                "recall": float(held.mean()), "coverage": float(self.in_small[index].any(0).mean())}


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K, balanced: bool = True,
         real_radii: np.ndarray | None = None) -> dict:
    """precision, recall, density and coverage of ``fake`` features against ``real`` features.
    ``real_radii`` (r_k of every real row) may be passed in when one real set scores many fake sets."""
    real, fake = np.asarray(real), np.asarray(fake)
    if len(fake) <= k:
        raise ValueError(f"{len(fake)} samples: precision and recall need more than k = {k}")
    real_radii = radii(real, k) if real_radii is None else real_radii
    counts, _ = inside_counts(fake, real, real_radii)
    small = real[:len(fake)] if balanced else real
    small_radii = radii(small, k) if balanced else real_radii
    _, covered = inside_counts(fake, small, small_radii)
    held, _ = inside_counts(small, fake, radii(fake, k))
    return {"precision": float((counts > 0).mean()), "density": float(counts.mean() / k),
            "recall": float((held > 0).mean()), "coverage": float(covered.mean())}
