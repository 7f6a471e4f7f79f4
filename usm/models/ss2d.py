"""USM's mixer: a one-direction 2D selective scan ("SS2D") over a token grid.

    >>> import torch
    >>> from usm.models.ss2d import SS2D
    >>> SS2D(32, scheme=3, grid=(4, 4))(torch.randn(2, 4, 4, 32)).shape
    torch.Size([2, 4, 4, 32])

in_proj D -> 2E (x, z; no bias) -> depthwise 3x3 conv on x in image space + SiLU -> selective scan
along the block's scan path -> LayerNorm(E) -> * silu(z) (the z gate; dropped with ``z_gate=False``) -> out_proj.

Every tensor stays token-major, (B, H, W, channels): the convolution runs in channels-last memory
(a view of the tokens), and the scan reads the grid along the block's path in place, so no step
copies a tensor into another layout or into scan order (``SelectiveSSM.tokens``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from usm.layers.selective_ssm import SelectiveSSM
from usm.scan_orders import path_name, scan_order


class SS2D(nn.Module):
    def __init__(self, hidden: int, scheme: int | str, grid: tuple[int, int], d_state: int = 16, expand: int = 2,
                 z_gate: bool = True, scan_backend: str = "auto"):
        super().__init__()
        inner = expand * hidden
        self.path, self.grid, self.z_gate = path_name(scheme), tuple(grid), z_gate
        # Without the z gate there is no z branch, so in_proj produces x only (no unused weights).
        self.in_proj = nn.Linear(hidden, 2 * inner if z_gate else inner, bias=False)
        self.conv2d = nn.Conv2d(inner, inner, kernel_size=3, padding=1, groups=inner)
        self.ssm = SelectiveSSM(inner, d_state, dt_rank=math.ceil(hidden / 16), scan_backend=scan_backend)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, hidden, bias=False)
        self.register_buffer("order", scan_order(self.path, *self.grid), persistent=False)

    def path_order(self, height: int, width: int) -> torch.Tensor:
        if (height, width) == self.grid:
            return self.order
        return scan_order(self.path, height, width).to(self.order.device)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, H, W, D) -> (B, H, W, D)."""
        batch, height, width, _ = h.shape
        inner = self.conv2d.in_channels
        # x and z from the two halves of in_proj's weight: each comes out contiguous, so x is
        # channels-last memory for the convolution as it stands (a chunk of one product is not)
        x = F.linear(h, self.in_proj.weight[:inner])
        z = F.linear(h, self.in_proj.weight[inner:]) if self.z_gate else None
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)  # (B, H, W, E), channels-last
        y = self.ssm.tokens(x.reshape(batch, height * width, inner), self.path_order(height, width))
        y = self.out_norm(y.view(batch, height, width, inner))
        if z is not None:
            y = y * F.silu(z)
        return self.out_proj(y)
