"""Exponential moving average of a model's trainable weights (never wrapped for DDP).

    >>> import torch
    >>> from usm.training.ema import make_ema, update_ema
    >>> model = torch.nn.Linear(2, 1); ema = make_ema(model)
    >>> with torch.no_grad(): _ = model.weight.add_(1.0)
    >>> update_ema(ema, model, decay=0.5)
    >>> torch.allclose(ema.weight, model.weight - 0.5)
    True
"""

from __future__ import annotations

import copy

import torch


def make_ema(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for the parameters that train (one foreach lerp over
    all of them, not a kernel per tensor); frozen parameters (fixed positions) and buffers are copied
    so the EMA model is always complete."""
    ema_params = dict(ema.named_parameters())
    trained, targets = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            trained.append(param.detach())
            targets.append(ema_params[name])
        else:
            ema_params[name].copy_(param)
    if trained:
        torch._foreach_lerp_(targets, trained, 1 - decay)
    for (_, ema_buf), (_, buf) in zip(ema.named_buffers(), model.named_buffers()):
        ema_buf.copy_(buf)
