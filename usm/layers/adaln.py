"""adaLN-Zero modulation and the final layer (DiT conventions, shared by every model).

    >>> import torch
    >>> from usm.layers.adaln import adaln_modulation, FinalLayer
    >>> shift, scale, gate = adaln_modulation(16, 3)(torch.randn(2, 16)).chunk(3, dim=-1)
    >>> FinalLayer(16, 12)(torch.randn(2, 5, 16), torch.randn(2, 16)).abs().max().item()  # zero-init
    0.0
"""

from __future__ import annotations

import torch
import torch.nn as nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, with (B, D) shift/scale broadcast over x's token dims (B, ..., D)."""
    return x * (1 + _over_tokens(scale, x)) + _over_tokens(shift, x)


def gated(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """gate (B, D) * x (B, ..., D)."""
    return x * _over_tokens(gate, x)


def _over_tokens(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape((x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],))


def adaln_modulation(hidden: int, chunks: int) -> nn.Sequential:
    """SiLU + Linear(hidden -> chunks * hidden), zero-initialised (adaLN-Zero: blocks start as identity).
    Modules store it as ``adaLN_modulation``, so keys read ``adaLN_modulation.1.weight`` as in DiT."""
    net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, chunks * hidden))
    nn.init.zeros_(net[1].weight)
    nn.init.zeros_(net[1].bias)
    return net


class FinalLayer(nn.Module):
    """LayerNorm (no affine) -> adaLN (shift, scale) -> Linear(hidden -> out), all zero-initialised."""

    def __init__(self, hidden: int, out_features: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_features)
        self.adaLN_modulation = adaln_modulation(hidden, 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
