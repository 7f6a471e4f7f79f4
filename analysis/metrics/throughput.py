"""Training and sampling throughput after warm-up, synchronised on CUDA.

    >>> import torch
    >>> from analysis.metrics.throughput import train_steps_per_second
    >>> model = torch.nn.Conv2d(3, 3, 1)
    >>> train_steps_per_second(lambda x, t, cond=None: model(x), torch.randn(1, 3, 4, 4), steps=1, warmup=0,
    ...                        parameters=list(model.parameters())) > 0
    True

Training: seconds per step of forward + backward + AdamW on one batch (the rectified-flow loss).
Sampling: one model forward per integration step; images/s = batch / (steps * seconds per forward).
Each result states what produced it: device, batch, dtype and scan backend.
"""

from __future__ import annotations

import statistics
import time

import torch

from usm.rectified_flow import training_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_steps_per_second(model, x, cond=None, steps: int = 3, warmup: int = 1, parameters=None) -> float:
    params = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step():
        training_loss(model, x, cond).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return 1.0 / _median_seconds(step, steps, warmup, x.device)


def sample_images_per_second(model, x, cond=None, sampling_steps: int = 25, repeats: int = 3, warmup: int = 1) -> float:
    t = torch.full((x.shape[0],), 0.5, device=x.device)

    @torch.no_grad()
    def forward():
        model(x, t, cond)

    return x.shape[0] / (sampling_steps * _median_seconds(forward, repeats, warmup, x.device))
