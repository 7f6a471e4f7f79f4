"""Training memory of a model: activation bytes (any device) and peak CUDA memory (GPU).

    >>> import torch
    >>> from analysis.metrics.memory import activation_bytes
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> activation_bytes(lambda: model(torch.randn(2, 4)).sum(), model) > 0
    True

Activation memory is the bytes of the tensors autograd saves for the backward pass of one training
step -- counted through ``torch.autograd.graph.saved_tensors_hooks``, each storage once, parameters
excluded. It depends only on shapes and dtypes, so it is the same on every device and can be
computed on the ``meta`` device in milliseconds for models and resolutions that do not fit (or
would take minutes) here. Peak GPU memory (``torch.cuda.max_memory_allocated``) additionally
includes weights, gradients, optimizer state and workspace; it is measured on CUDA only.
"""

from __future__ import annotations

from typing import Callable

import torch


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata  # unique per storage, also on the meta device


def activation_bytes(loss_fn: Callable[[], torch.Tensor], model: torch.nn.Module) -> int:
    """Bytes saved for backward while ``loss_fn()`` builds its graph."""
    params = {_storage_key(p) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        key = _storage_key(tensor)
        if key not in params:
            seen[key] = max(seen.get(key, 0), tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn()
    return sum(seen.values())


def training_step_memory(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond=None) -> dict:
    """Activation bytes of one rectified-flow training step, and on CUDA its peak allocated bytes."""
    from usm.rectified_flow import training_loss

    model.train()
    out = {"activation_bytes": activation_bytes(lambda: training_loss(model, x, cond), model)}
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(x.device)
        optimizer = torch.optim.AdamW(model.parameters())
        for _ in range(2):  # the second step has the optimizer state allocated
            training_loss(model, x, cond).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(x.device)
    return out
