"""Precision, recall, density and coverage: against a plain-loop twin, and on data of known quality."""

import numpy as np
import pytest

from analysis.metrics.manifold import features, prdc, radii
from analysis.metrics.quality import held_out_images, noise_images, quality, reference_images


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def slow_prdc(real, fake, k):
    """The definitions written out point by point (Kynkaanniemi et al. 2019, Naeem et al. 2020)."""
    def kth(points, i):
        return sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)[k - 1]

    def inside(x, centres, rad):
        return [np.linalg.norm(x - c) <= r for c, r in zip(centres, rad)]

    big = [kth(real, i) for i in range(len(real))]
    small_real = real[:len(fake)]
    small = [kth(small_real, i) for i in range(len(small_real))]
    fake_r = [kth(fake, i) for i in range(len(fake))]
    counts = [sum(inside(f, real, big)) for f in fake]
    return {"precision": np.mean([c > 0 for c in counts]), "density": np.mean(counts) / k,
            "recall": np.mean([any(inside(r, fake, fake_r)) for r in small_real]),
            "coverage": np.mean([any(inside(f, [c], [r])[0] for f in fake) for c, r in zip(small_real, small)])}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_the_definitions_written_as_loops(k):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((60, 5))
    fake = rng.standard_normal((20, 5)) * 1.3 + 0.4
    fast, slow = prdc(real, fake, k=k), slow_prdc(real, fake, k)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert 0 < fast["precision"] < 1 and 0 < fast["coverage"] < 1  # the case is not degenerate


def test_radii_leave_the_point_itself_out_and_need_enough_points():
    points = np.array([[0.0], [1.0], [3.0], [6.0]])
    assert radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="4 points cannot have a 4-th nearest neighbour"):
        radii(points, k=4)


@pytest.mark.slow
def test_pixel_precision_is_high_for_held_out_real_images_and_zero_for_noise():
    reference = reference_images("shapes-gray", 16, 64)
    real = quality(reference, held_out_images("shapes-gray", 16, 64), "shapes-gray", 16, swd=False)
    noise = quality(reference, noise_images((64, 16, 16, 1)), "shapes-gray", 16, swd=False)
    assert real["precision"] > 0.85 and real["coverage"] > 0.7 and real["density"] > 0.7
    assert noise["precision"] == noise["density"] == noise["coverage"] == 0.0
    # recall's known weakness (Naeem et al.): scattered samples have huge k-NN balls that swallow real images
    assert noise["recall"] > 0.5


@pytest.mark.slow
def test_pixel_precision_agrees_with_a_brute_force_knn_over_the_whole_training_set():
    """The study's precision: every sample against all 4,096 training images, k = 3."""
    training = features(reference_images("shapes-gray", 16, 4096))
    rng = np.random.default_rng(0)
    samples = held_out_images("shapes-gray", 16, 48).astype(float)
    samples = (samples + rng.normal(0, 12, samples.shape)).clip(0, 255).round().astype(np.uint8)
    ours = quality(reference_images("shapes-gray", 16, 48), samples, "shapes-gray", 16, swd=False)["precision"]
    squared = (training ** 2).sum(1)
    between = squared[:, None] + squared[None] - 2 * training @ training.T  # plain numpy, float32
    third = np.sqrt(np.sort(np.maximum(between, 0), axis=1)[:, 3])  # column 0 is the image itself
    x = features(samples)
    to_real = np.sqrt(np.maximum((x ** 2).sum(1)[:, None] + squared[None] - 2 * x @ training.T, 0))
    independent = float((to_real <= third[None]).any(1).mean())
    assert 0.1 < ours < 0.9 and abs(ours - independent) <= 0.05
