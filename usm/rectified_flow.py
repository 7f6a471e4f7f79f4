"""Rectified flow: the training objective and the samplers shared by every model.

    >>> import torch
    >>> from usm.rectified_flow import sample, sample_timesteps
    >>> sample_timesteps(4, "uniform", torch.Generator().manual_seed(0)).shape
    torch.Size([4])
    >>> x1 = sample(lambda x, t, cond=None: torch.ones_like(x), torch.zeros(2, 3), steps=5)
    >>> x1.tolist()  # the constant field 1 moves noise 0 to 1 in unit time
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

Convention (docs/conventions.md): ``x_t = t * x_1 + (1 - t) * eps``, t = 0 is noise and t = 1 is
data, the model predicts the velocity ``v = x_1 - eps``, and the loss is the MSE. Models with
``learn_sigma`` output 2C channels: the first C are the velocity.

Timestep sampling (``TIMESTEPS``): ``logit_normal`` (t = sigmoid(n), n ~ N(0, 1)), and
``uniform``, t ~ U[0, 1] over the whole interval. The reference code's ``uniform`` drew t in
[0, 1) and then divided by 1000, so it trained on almost pure noise only (docs/models.md,
"Defects of the reference code"); this one does not.

Samplers (``SAMPLERS``): Euler and Heun from t = 0 to t = 1 in N uniform steps (default 25),
with classifier-free guidance through ``usm.guidance.guided``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from usm import deprecated
from usm.guidance import guided

TIMESTEPS: dict[str, Callable[..., torch.Tensor]] = {
    "logit_normal": lambda n, gen, device: torch.sigmoid(torch.randn(n, generator=gen, device=device)),
    "uniform": lambda n, gen, device: torch.rand(n, generator=gen, device=device),
}


def sample_timesteps(n: int, scheme: str = "logit_normal", generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    scheme = deprecated.value("timesteps", scheme)
    if scheme not in TIMESTEPS:
        raise ValueError(f"unknown timestep sampling {scheme!r}; choose one of {sorted(TIMESTEPS)}")
    return TIMESTEPS[scheme](n, generator, device)


def interpolate(x1: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t * x1 + (1 - t) * eps, with t (B,) broadcast over x's other dims."""
    t = t.reshape(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)
    return t * x1 + (1 - t) * eps


def velocity(output: torch.Tensor, channels: int) -> torch.Tensor:
    """The velocity part of a model output (the first C channels; the rest is learn_sigma's)."""
    return output[:, :channels]


def training_loss(model, x1: torch.Tensor, cond=None, scheme: str = "logit_normal",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between the predicted and the true velocity at a random time of the straight path."""
    eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    t = sample_timesteps(x1.shape[0], scheme, generator, x1.device)
    prediction = velocity(model(interpolate(x1, eps, t), t, cond), x1.shape[1])
    return F.mse_loss(prediction.float(), (x1 - eps).float())


def euler_step(field, x, t0, t1):
    return x + (t1 - t0) * field(x, t0)


def heun_step(field, x, t0, t1):
    """Trapezoidal predictor-corrector: exact for fields that are affine in t."""
    v0 = field(x, t0)
    x_pred = x + (t1 - t0) * v0
    return x + (t1 - t0) * 0.5 * (v0 + field(x_pred, t1))


SAMPLERS = {"euler": euler_step, "heun": heun_step}


@torch.no_grad()
def sample(model, noise: torch.Tensor, steps: int = 25, method: str = "euler", cond=None,
           guidance_scale: float = 1.0) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 0 (``noise``) to t = 1; returns the samples."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(SAMPLERS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    channels = noise.shape[1]

    def field(x, t):
        t_batch = torch.full((x.shape[0],), float(t), device=x.device)
        return velocity(guided(model, x, t_batch, cond, guidance_scale), channels).to(x.dtype)

    grid = torch.linspace(0.0, 1.0, steps + 1).tolist()
    x = noise
    for t0, t1 in zip(grid[:-1], grid[1:]):
        x = SAMPLERS[method](field, x, t0, t1)
    return x
