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
    """Return (selective_scan_fn or None, reason it is unavailable)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, or an OSError/RuntimeError from a broken CUDA build
        return None, f"mamba_ssm cannot be imported ({type(exc).__name__}: {exc})"
    return selective_scan_fn, ""


def mamba_ssm_status() -> tuple[bool, str]:
    fn, why = _load()
    return fn is not None, why


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
    # The kernel wants contiguous inputs and float32 D / delta_bias.
    B, C = B.contiguous(), C.contiguous()
    D = None if D is None else D.float()
    delta_bias = None if delta_bias is None else delta_bias.float()
    return fn(u.contiguous(), delta.contiguous(), A.contiguous(), B, C, D, z, delta_bias, delta_softplus,
              return_last_state)
