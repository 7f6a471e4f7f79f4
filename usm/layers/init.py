"""The initialisation rules of the released codes, applied over a model's own constructor inits.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4))
    >>> xavier_linears(net, keep=[net[1]])
    >>> float(net[0].bias.abs().sum()), float(net[1].bias.abs().sum()) > 0
    (0.0, True)

Each family starts where its authors' code starts (docs/models.md, "Initialisation"):

- USM's ``initialize_weights`` first gives every ``nn.Linear`` xavier-uniform weights and zero
  biases (DiT's ``_basic_init``), then re-initialises the timestep MLP, adaLN and the final layer.
  Its mixer's ``x_proj`` and ``dt`` projection are plain parameters there, so the rule misses them.
  ``xavier_linears(model, keep=...)`` is that rule; ``keep`` lists the modules whose constructors
  already gave the explicit init (ours run those inits at construction, so they are kept, not redone).
- ZigMa (``m_init``) applies Mamba's ``_init_weights``: every Linear bias zeroed but the dt
  projection's, and every ``out_proj`` weight re-drawn with PyTorch's Linear default and divided by
  sqrt(depth) (GPT-2's rule for residual branches): ``mamba_residual_init(model, depth)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn


def _kept(model: nn.Module, keep: Iterable[nn.Module]) -> set[int]:
    """ids of every module in ``keep`` and below it."""
    return {id(sub) for module in keep for sub in module.modules()}


@torch.no_grad()
def xavier_linears(model: nn.Module, keep: Iterable[nn.Module] = ()) -> None:
    """xavier-uniform weight and zero bias for every ``nn.Linear`` under ``model`` not in ``keep``."""
    kept = _kept(model, keep)
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module) not in kept:
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@torch.no_grad()
def mamba_residual_init(model: nn.Module, depth: int, keep: Iterable[nn.Module] = ()) -> None:
    """Mamba's ``_init_weights`` (n_residuals_per_layer = 1): zero every Linear bias not in ``keep``
    (the dt projection's bias holds its softplus-inverse init), and set every weight a module names
    ``out_proj`` to PyTorch's Linear default (kaiming-uniform, a = sqrt(5)) divided by sqrt(depth)."""
    kept = _kept(model, keep)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.bias is not None and id(module) not in kept:
            nn.init.zeros_(module.bias)
        out_proj = getattr(module, "out_proj", None)
        if isinstance(out_proj, nn.Linear):
            nn.init.kaiming_uniform_(out_proj.weight, a=math.sqrt(5))
            out_proj.weight /= math.sqrt(depth)


INITS = ("released", "default")  # the authors' rule / PyTorch's defaults under the constructors' explicit inits


def check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
