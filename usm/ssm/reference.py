"""The obviously-correct selective scan: one Python step per sequence position.

    >>> import torch
    >>> from usm.ssm.reference import selective_scan_reference
    >>> u = torch.randn(1, 4, 6); A = -torch.ones(4, 2); B = C = torch.ones(1, 2, 6)
    >>> selective_scan_reference(u, torch.ones_like(u), A, B, C).shape
    torch.Size([1, 4, 6])

Autograd records each step separately, so the backward costs O(L) (unlike mamba_ssm's
``selective_scan_ref``, which indexes a (B, D, L, N) tensor inside its loop and is quadratic).
It is the twin every fast backend is tested against, and the baseline of the scan benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from usm.ssm.inputs import check_inputs, expand_bc


def selective_scan_reference(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bx = expand_bc(B, shape.b_form, shape.channels, shape.length)  # broadcastable to (batch, D, N, L)
    Cx = expand_bc(C, shape.c_form, shape.channels, shape.length)

    h = u.new_zeros(shape.batch, shape.channels, shape.state)
    ys = []
    for t in range(shape.length):
        decay = torch.exp(delta[:, :, t, None] * A)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(out_dtype)
    return (y, h) if return_last_state else y
