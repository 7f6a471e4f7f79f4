"""Quality metrics: the Frechet distance against closed forms, FID plumbing, SWD behaviour."""

from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from analysis.metrics.fid import FIDWeightsMissing, compute_metrics, inception_weights
from analysis.metrics.frechet import frechet_distance
from analysis.metrics.swd import laplacian_pyramid, swd
from usm.data.shapes import render_shapes


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_direct_scipy_on_full_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + np.eye(8), b @ b.T + np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)
    # Empirical statistics of samples drawn from the two Gaussians approach the closed form.
    x = rng.multivariate_normal(mu1, s1, size=200_000)
    assert frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu2, s2) == pytest.approx(direct, rel=0.02)


def test_fitted_frechet_stays_finite_on_features_with_dead_units():
    """The shape classifier's features of noise leave ReLU units at 0: singular covariances. The ridge
    keeps the square root defined, and moves a well-conditioned distance by almost nothing."""
    from analysis.metrics.frechet import fitted_frechet

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(500, 6)), rng.normal(1.0, 1.0, size=(500, 6))
    a[:, 2] = b[:, 2] = 0.0  # a dead unit in both sets
    live = [0, 1, 3, 4, 5]
    assert fitted_frechet(a, b) == pytest.approx(fitted_frechet(a[:, live], b[:, live], ridge=0), abs=1e-5)
    full_a, full_b = rng.normal(size=(500, 6)), rng.normal(size=(500, 6))
    plain = frechet_distance(full_a.mean(0), np.cov(full_a, rowvar=False), full_b.mean(0), np.cov(full_b, rowvar=False))
    assert fitted_frechet(full_a, full_b) == pytest.approx(plain, abs=1e-4)


def test_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("USM_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FIDWeightsMissing, match=r"weights-inception-2015-12-05-6726825d.pth.*https://.*--fid-weights"):
        inception_weights()
    with pytest.raises(FIDWeightsMissing, match="nope.pth does not exist"):
        inception_weights(str(tmp_path / "nope.pth"))


def write_images(folder, images):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")


@pytest.mark.slow
def test_fid_plumbing_with_generated_weights(tmp_path, monkeypatch):
    """The whole path (folders, caps, reference cache, weights file) with RANDOM Inception weights:
    the numbers are plumbing checks, not FIDs, and are never reported."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))
    dummy = tmp_path / "empty.pth"
    torch.save({}, dummy)
    torch.manual_seed(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(dummy))
    weights = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), weights)

    images, _ = render_shapes(40, seed=0)
    write_images(tmp_path / "a", images[:20])
    write_images(tmp_path / "b", images[20:])
    noisy = np.clip(images[:20].astype(int) + np.random.default_rng(0).integers(-90, 90, images[:20].shape), 0, 255)
    write_images(tmp_path / "noisy", noisy.astype(np.uint8))
    same = compute_metrics(tmp_path / "a", tmp_path / "b", weights=str(weights), kid=True, prc=True)
    assert same["num_samples"] == 20 and same["num_reference"] == 20 and same["weights"] == str(weights)
    assert {"fid", "kid", "inception_precision", "inception_recall"} <= same.keys()
    assert 0 <= same["inception_precision"] <= 1
    far = compute_metrics(tmp_path / "noisy", tmp_path / "b", weights=str(weights))
    assert far["fid"] > same["fid"]
    capped = compute_metrics(tmp_path / "a", tmp_path / "b", num=10, weights=str(weights))
    assert capped["num_samples"] == 10
    with pytest.raises(ValueError, match="holds 20 images, fewer than the 30"):
        compute_metrics(tmp_path / "a", tmp_path / "b", num=30, weights=str(weights))


@pytest.mark.parametrize("device, cuda, current", [("cpu", False, None), ("cuda", True, "cuda"),
                                                    ("cuda:1", True, "cuda:1")])
def test_fid_runs_torch_fidelity_on_the_device_asked_for(tmp_path, monkeypatch, device, cuda, current):
    """torch-fidelity knows only cuda on/off and uses the current CUDA device: "cuda:1" must turn CUDA
    on (it was read as the CPU) and make GPU 1 current while it runs."""
    import contextlib

    import torch_fidelity

    seen = {}
    monkeypatch.setattr(torch.cuda, "device", lambda d: seen.update(current=str(d)) or contextlib.nullcontext())
    monkeypatch.setattr(torch_fidelity, "calculate_metrics",
                        lambda **kw: seen.update(cuda=kw["cuda"]) or {"frechet_inception_distance": 1.0})
    weights = tmp_path / "w.pth"
    torch.save({}, weights)  # loads as a state dict: the file check passes, torch-fidelity is faked
    write_images(tmp_path / "a", render_shapes(2, seed=0)[0])
    compute_metrics(tmp_path / "a", tmp_path / "a", weights=str(weights), device=device)
    assert seen == ({"cuda": cuda, "current": current} if cuda else {"cuda": False})


@pytest.fixture(scope="module")
def shapes_sets():
    images, _ = render_shapes(256, seed=0)
    return torch.from_numpy(images[:128]), torch.from_numpy(images[128:])


@pytest.mark.slow
def test_swd_same_distribution_is_small_and_deterministic(shapes_sets):
    a, b = shapes_sets
    first, again = swd(a, b, seed=3, patches_per_image=32), swd(a, b, seed=3, patches_per_image=32)
    assert first == again
    assert first["resolutions"] == [32, 16]
    assert first["mean"] < 0.5 * swd(a, torch.zeros_like(b) + 128, seed=3, patches_per_image=32)["mean"]


@pytest.mark.slow
@pytest.mark.parametrize("corrupt", ["noise", "colour"])
def test_swd_grows_monotonically_with_corruption(shapes_sets, corrupt):
    a, b = shapes_sets
    x = b.permute(0, 3, 1, 2).float() / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    values = []
    for strength in (0.0, 0.1, 0.3, 0.6):
        y = x + strength * noise if corrupt == "noise" else x + strength * torch.tensor([1.0, -0.5, 0.2])[:, None, None]
        values.append(swd(a, y.clamp(-1, 1), seed=0, patches_per_image=32)["mean"])
    assert values == sorted(values) and values[-1] > 2 * values[0]


def test_laplacian_pyramid_reconstructs():
    import torch.nn.functional as F

    x = torch.rand(2, 3, 32, 32)
    levels = laplacian_pyramid(x)
    up = F.interpolate(levels[1], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(levels[0] + up, x)
