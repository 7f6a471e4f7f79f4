"""Depthwise causal conv1d + SiLU along a sequence (ZigMa's mixer), with an optional CUDA kernel.

    >>> import torch
    >>> from usm.layers.causal_conv import causal_conv1d_silu
    >>> x, w = torch.randn(2, 3, 5), torch.randn(3, 4)
    >>> causal_conv1d_silu(x, w, None).shape
    torch.Size([2, 3, 5])

Output position t sees inputs t - K + 1 .. t only. On CUDA tensors the ``causal-conv1d`` package's
fused kernel is used when it imports (the ``cuda`` extra); everywhere else the PyTorch form
``conv1d(x, w, padding=K - 1, groups=E)[..., :L]``. ``backend`` forces one ("torch" or "cuda").
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=1)
def cuda_kernel():
    """causal_conv1d_fn, or None when the package does not import."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # ImportError, or a broken CUDA build
        return None
    return causal_conv1d_fn


def causal_conv1d_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    length, width = x.shape[-1], weight.shape[-1]
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., :length]
    return F.silu(out)


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       backend: str = "auto") -> torch.Tensor:
    """x (batch, E, L), weight (E, K), bias (E,) or None -> silu(causal depthwise conv), (batch, E, L)."""
    kernel = cuda_kernel()
    if backend == "cuda" or (backend == "auto" and x.is_cuda and kernel is not None):
        if kernel is None or not x.is_cuda:
            raise RuntimeError("the causal-conv1d CUDA kernel needs CUDA tensors and the `cuda` extra "
                               "(pip install causal-conv1d on a GPU machine)")
        return kernel(x.contiguous(), weight, bias, activation="silu")
    return causal_conv1d_torch(x, weight, bias)
