"""Selective scan (Mamba-1) with interchangeable backends.

    >>> import torch
    >>> from usm.ssm import selective_scan
    >>> u = torch.randn(2, 8, 16); A = -torch.rand(8, 4); B = torch.randn(2, 4, 16)
    >>> selective_scan(u, torch.rand_like(u), A, B, B, backend="reference").shape
    torch.Size([2, 8, 16])

Semantics (DESIGN.md section 3, mamba_ssm's ``selective_scan_fn`` convention)::

    delta <- softplus(delta + delta_bias)            (when asked)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   h_{-1} = 0
    y_t    = sum_N(C_t * h_t) + D * u_t;   y *= silu(z)   (when z is given)

Work is done in float32; the output has u's dtype. Backends (``BACKENDS``):

- ``reference``: a per-step loop, obviously correct (O(L) backward through autograd);
- ``torch``: vectorised pure PyTorch with a hand-written backward, the default off CUDA;
- ``mamba_ssm``: mamba_ssm's fused CUDA kernel (optional ``cuda`` extra);
- ``auto``: ``mamba_ssm`` for CUDA tensors when it imports, else ``torch``.
"""

from __future__ import annotations

from usm.ssm.fast_torch import selective_scan_torch
from usm.ssm.mamba_cuda import mamba_ssm_status, selective_scan_mamba_ssm
from usm.ssm.reference import selective_scan_reference

BACKENDS = {
    "reference": selective_scan_reference,
    "torch": selective_scan_torch,
    "mamba_ssm": selective_scan_mamba_ssm,
}


def resolve_backend(backend: str, device) -> str:
    """The concrete backend ``backend`` means for tensors on ``device``."""
    if backend == "auto":
        on_cuda = getattr(device, "type", str(device)) == "cuda"
        return "mamba_ssm" if on_cuda and mamba_ssm_status()[0] else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {sorted(BACKENDS) + ['auto']}")
    return backend


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False,
    backend="auto",
):
    fn = BACKENDS[resolve_backend(backend, u.device)]
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


__all__ = ["BACKENDS", "resolve_backend", "selective_scan", "mamba_ssm_status"]
