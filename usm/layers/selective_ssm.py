"""The selective state-space core of a Mamba-1 mixer: input-dependent dt, B, C, then the scan.

    >>> import torch
    >>> from usm.layers.selective_ssm import SelectiveSSM
    >>> SelectiveSSM(32)(torch.randn(2, 32, 10)).shape
    torch.Size([2, 32, 10])
    >>> SelectiveSSM(32).tokens(torch.randn(2, 10, 32), order=torch.arange(10).flip(0)).shape
    torch.Size([2, 10, 32])

Shared by USM's 2D mixer and ZigMa's 1D mixer; they differ only around it (convolution, scan
order, gating). Initialisation follows Mamba: A = -exp(A_log), A_log = log(1..N); D = 1; dt_proj
bias such that softplus(bias) is log-uniform in [dt_min, dt_max].
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from usm.ssm import scan_tokens, selective_scan


class SelectiveSSM(nn.Module):
    def __init__(self, d_inner: int, d_state: int = 16, dt_rank: int | None = None, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, dt_init_floor: float = 1e-4, scan_backend: str = "auto"):
        super().__init__()
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = dt_rank or math.ceil(d_inner / 32)  # = ceil(hidden / 16) with expand 2
        self.scan_backend = scan_backend
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """x, z: (B, d_inner, L) -> (B, d_inner, L); y *= silu(z) when z is given."""
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # the bias is added inside the scan
        return selective_scan(
            x, dt, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, backend=self.scan_backend,
        )

    def tokens(self, x: torch.Tensor, order: torch.Tensor | None = None, z: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The same on token-major x (B, L, d_inner), the layout linear layers write, scanned along
        ``order`` (step t reads position ``order[t]``); the output (B, L, d_inner) at x's positions,
        times silu(z) when z (B, L, d_inner) is given.
        Backends with a token-major kernel (``usm.ssm.TOKEN_BACKENDS``) read x in place; the others
        get it gathered along the path and transposed."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return scan_tokens(
            x, dt @ self.dt_proj.weight.T, -torch.exp(self.A_log.float()), B, C, self.D.float(), z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, order=order, backend=self.scan_backend,
        )
