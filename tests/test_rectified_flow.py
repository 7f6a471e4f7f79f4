"""Rectified flow: the interpolation, the loss, timestep distributions (KS tests), exact samplers."""

import pytest
import torch
from scipy import stats

from usm.models.registry import build_model
from usm.rectified_flow import interpolate, sample, sample_timesteps, training_loss


def test_interpolation_endpoints_and_velocity():
    x1, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(interpolate(x1, eps, torch.zeros(3)), eps)
    torch.testing.assert_close(interpolate(x1, eps, torch.ones(3)), x1)
    t = torch.tensor([0.2, 0.5, 0.9])
    dt = 1e-3
    finite_difference = (interpolate(x1, eps, t + dt) - interpolate(x1, eps, t)) / dt
    torch.testing.assert_close(finite_difference, x1 - eps, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("scheme, cdf", [
    ("logit_normal", lambda t: stats.norm.cdf(torch.logit(torch.as_tensor(t)).numpy())),
    ("uniform", lambda t: t),
])
def test_timestep_distributions_ks(scheme, cdf):
    t = sample_timesteps(20_000, scheme, torch.Generator().manual_seed(0)).numpy()
    assert stats.kstest(t, cdf).pvalue > 1e-3
    assert 0 <= t.min() and t.max() <= 1


def test_uniform_covers_the_whole_interval():
    """The reference's uniform sampling divided by 1000 and never left [0, 0.001)."""
    t = sample_timesteps(10_000, "uniform", torch.Generator().manual_seed(1))
    assert t.max() > 0.99 and (t > 0.5).float().mean() == pytest.approx(0.5, abs=0.03)


def test_ks_distinguishes_the_schemes():
    t = sample_timesteps(20_000, "logit_normal", torch.Generator().manual_seed(0)).numpy()
    assert stats.kstest(t, lambda s: s).pvalue < 1e-6


def test_unknown_scheme_and_sampler_raise():
    with pytest.raises(ValueError, match="unknown timestep sampling 'cosine'"):
        sample_timesteps(2, "cosine")
    with pytest.raises(ValueError, match="unknown sampler 'rk4'"):
        sample(lambda x, t, cond=None: x, torch.zeros(1, 1), method="rk4")


def constant_field(c):
    return lambda x, t, cond=None: torch.full_like(x, c)


def affine_in_t(a, b):
    return lambda x, t, cond=None: a + b * t.reshape(-1, *([1] * (x.dim() - 1))) + 0 * x


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 3, 25])
def test_samplers_integrate_a_straight_flow_exactly(method, steps):
    noise = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(sample(constant_field(0.7), noise, steps, method), noise + 0.7)


def test_heun_is_exact_and_euler_first_order_for_affine_fields():
    noise, a, b = torch.zeros(2, 1, 1, 1), 0.3, 2.0  # x(1) = a + b / 2
    for steps in (1, 4, 10):
        torch.testing.assert_close(sample(affine_in_t(a, b), noise, steps, "heun"), noise + a + b / 2)
        euler_error = sample(affine_in_t(a, b), noise, steps, "euler") - (noise + a + b / 2)
        torch.testing.assert_close(euler_error, torch.full_like(noise, -b / (2 * steps)))


def test_an_ideal_velocity_model_recovers_its_data_point():
    """For one data point x1 the exact velocity is (x1 - x_t) / (1 - t); sampling must land on x1."""
    x1 = torch.randn(1, 2, 3, 3)

    def ideal(x, t, cond=None):
        return (x1 - x) / (1 - t.reshape(-1, 1, 1, 1)).clamp_min(1e-6)

    torch.testing.assert_close(sample(ideal, torch.randn(1, 2, 3, 3), steps=10), x1, rtol=1e-4, atol=1e-4)


def test_training_loss_is_deterministic_under_a_generator_and_trains():
    torch.manual_seed(0)
    model = build_model("DiT-T/2", in_channels=3, learn_sigma=True)
    x1 = torch.randn(4, 3, 32, 32)
    a = training_loss(model, x1, generator=torch.Generator().manual_seed(3))
    b = training_loss(model, x1, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item()
    # Zero-initialised output: predicted v = 0, so the loss is E|x1 - eps|^2 = 2 per element.
    assert a.item() == pytest.approx(2.0, rel=0.1)
    a.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_guided_sampling_runs_for_class_models():
    model = build_model("USM-T/2", in_channels=3, num_classes=3).eval()
    out = sample(model, torch.randn(2, 3, 32, 32), steps=2, cond=torch.tensor([0, 2]), guidance_scale=4.0)
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
