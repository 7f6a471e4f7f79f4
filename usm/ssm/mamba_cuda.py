"""mamba_ssm's fused CUDA selective scan, imported lazily.

    >>> from usm.ssm.mamba_cuda import mamba_ssm_status
    >>> available, why = mamba_ssm_status()  # (False, "...") on a machine without the CUDA build

mamba_ssm 2.3.x imports its compiled ``selective_scan_cuda`` at import time, so on a machine
without the CUDA build nothing of it can be imported (not even its pure-PyTorch reference).
usm-bench therefore never imports it at start-up; ``backend="auto"`` asks here first.
"""

from __future__ import annotations

import functools

INSTALL_HINT = (
    "install the CUDA extra on a GPU machine: "
    'MAMBA_FORCE_BUILD=TRUE pip install --no-build-isolation -e ".[cuda]" '
    "(or a prebuilt mamba-ssm wheel matching your torch and CUDA versions)"
)


@functools.lru_cache(maxsize=None)
def _load():
    """Return (selective_scan_fn or None, reason it is unavailable). On a GPU machine the kernel
    must also run: a build for another GPU architecture or CUDA version imports and then fails at
    its first call, and ``auto`` should fall back to Triton then, not crash a training step."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, or an OSError/RuntimeError from a broken CUDA build
        return None, f"mamba_ssm cannot be imported ({type(exc).__name__}: {exc})"
    import torch

    if torch.cuda.is_available():
        why = probe(selective_scan_fn, "cuda")
        if why:
            return None, why
    return selective_scan_fn, ""


def probe(fn, device) -> str:
    """'' when ``fn`` runs a tiny scan on ``device``, else why not."""
    import torch

    try:
        u = torch.zeros(1, 1, 2, device=device)
        fn(*kernel_inputs(u, u, -torch.ones(1, 1, device=device), torch.zeros(1, 1, 2, device=device),
                          torch.zeros(1, 1, 2, device=device)))
    except Exception as exc:
        return f"mamba_ssm imports but its kernel fails on this machine ({type(exc).__name__}: {exc})"
    return ""


def mamba_ssm_status() -> tuple[bool, str]:
    fn, why = _load()
    return fn is not None, why


def kernel_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None):
    """The scan's inputs as mamba_ssm's kernel accepts them (its ``selective_scan.cpp`` checks):
    u in fp32, fp16 or bf16 and every per-position input (delta, z, a variable or grouped B / C)
    in u's dtype; A, a fixed-form (D, N) B / C, D and delta_bias in float32; the last dimension of
    every tensor contiguous. Autocast and mixed layers hand the scan mixed dtypes, which the kernel
    refuses with an error (or, for a fixed B in bf16, an error deep inside a training step)."""
    dtype = u.dtype

    def per_position(x):
        return None if x is None else x.to(dtype).contiguous()

    def bc(x):  # (D, N): a weight, float32; (batch, N, L) or (batch, G, N, L): per position, u's dtype
        return x.float().contiguous() if x.dim() == 2 else per_position(x)

    return (u.contiguous(), per_position(delta), A.float().contiguous(), bc(B), bc(C),
            None if D is None else D.float().contiguous(), per_position(z),
            None if delta_bias is None else delta_bias.float().contiguous())


def selective_scan_mamba_ssm(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    fn, why = _load()
    if fn is None:
        raise RuntimeError(f"backend='mamba_ssm' is unavailable: {why}; {INSTALL_HINT}")
    if not u.is_cuda:
        raise RuntimeError(
            f"backend='mamba_ssm' needs CUDA tensors, got device {u.device}; "
            "use backend='auto' or 'torch' off the GPU"
        )
    return fn(*kernel_inputs(u, delta, A, B, C, D, z, delta_bias), delta_softplus, return_last_state)
