"""Validation and layout of selective-scan inputs, shared by every backend.

    >>> import torch
    >>> from usm.ssm.inputs import check_inputs
    >>> u = torch.randn(2, 8, 5); A = -torch.rand(8, 4); B = torch.randn(2, 4, 5)
    >>> check_inputs(u, u, A, B, B, None, None, None).bc_groups
    1

The three forms of B and C (docs/scan.md):

- ``variable``: (batch, N, L), one B_t per sequence position, shared by all channels;
- ``grouped``:  (batch, G, N, L), channel d uses group d // (D / G);
- ``fixed``:    (D, N), no dependence on the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScanShape:
    batch: int
    channels: int  # D
    length: int  # L
    state: int  # N
    b_form: str
    c_form: str
    bc_groups: int  # G used by the work layout: 1 unless B or C is grouped


def bc_form(x: torch.Tensor, name: str, batch: int, channels: int, state: int, length: int) -> tuple[str, int]:
    """Return (form, groups) of a B or C tensor, or raise naming the bad shape."""
    shape = tuple(x.shape)
    if x.dim() == 2 and shape == (channels, state):
        return "fixed", 1
    if x.dim() == 3 and shape == (batch, state, length):
        return "variable", 1
    if x.dim() == 4 and shape[0] == batch and shape[2:] == (state, length) and shape[1] >= 1:
        groups = shape[1]
        if channels % groups:
            raise ValueError(f"{name} has {groups} groups, which does not divide D={channels} channels")
        return "grouped", groups
    raise ValueError(
        f"{name} has shape {shape}; expected (D, N)={(channels, state)}, (batch, N, L)={(batch, state, length)} "
        f"or (batch, G, N, L) with G dividing D"
    )


def check_inputs(u, delta, A, B, C, D, z, delta_bias) -> ScanShape:
    """Check shapes and devices of a selective-scan call; return its dimensions."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, D, L), got shape {tuple(u.shape)}")
    batch, channels, length = u.shape
    if tuple(delta.shape) != tuple(u.shape):
        raise ValueError(f"delta has shape {tuple(delta.shape)}, expected u's shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"A must be (D, N) with D={channels}, got shape {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported: USM and ZigMa use real A")
    state = A.shape[1]
    b_form, b_groups = bc_form(B, "B", batch, channels, state, length)
    c_form, c_groups = bc_form(C, "C", batch, channels, state, length)
    if b_groups > 1 and c_groups > 1 and b_groups != c_groups:
        raise ValueError(f"B has {b_groups} groups and C has {c_groups}; grouped B and C must agree")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and tuple(vec.shape) != (channels,):
            raise ValueError(f"{name} must be ({channels},), got shape {tuple(vec.shape)}")
    if z is not None and tuple(z.shape) != tuple(u.shape):
        raise ValueError(f"z has shape {tuple(z.shape)}, expected u's shape {tuple(u.shape)}")
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"selective_scan inputs are on several devices: {sorted(map(str, devices))}")
    return ScanShape(batch, channels, length, state, b_form, c_form, max(b_groups, c_groups))


def dtypes_of(*tensors) -> tuple:
    """The dtype of each input (None for an absent one): what a backend that computes in float32
    returns each gradient as (``as_input_dtypes``), so bf16 and fp16 callers get their own dtypes."""
    return tuple(None if x is None else x.dtype for x in tensors)


def as_input_dtypes(grads, dtypes) -> tuple:
    """Each gradient in its input's dtype (``dtypes_of``); None stays None."""
    return tuple(None if g is None else g.to(dtype) for g, dtype in zip(grads, dtypes))


def expand_bc(x: torch.Tensor, form: str, channels: int, length: int) -> torch.Tensor:
    """B or C as a float32 tensor broadcastable to (batch, D, N, L), indexable by position."""
    x = x.float()
    if form == "fixed":
        return x[None, :, :, None].expand(-1, -1, -1, length)
    if form == "variable":
        return x[:, None]
    return x.repeat_interleave(channels // x.shape[1], dim=1)


# The compiled backends (numba, triton) see B and C in one layout, (batch, G, N, L), as views.

def work_groups(shape) -> int:
    """Groups of the kernels' (batch, G, N, L) layout: D when B or C is fixed (one 'group' per channel)."""
    return shape.channels if "fixed" in (shape.b_form, shape.c_form) else shape.bc_groups


def grouped_bc(x: torch.Tensor, form: str, shape, groups: int) -> torch.Tensor:
    """B or C as (batch, groups, N, L): variable and fixed forms broadcast, coarser groups repeat."""
    batch, length = shape.batch, shape.length
    if form == "variable":
        return x.unsqueeze(1).expand(-1, groups, -1, -1)
    if form == "fixed":
        return x[None, :, :, None].expand(batch, -1, -1, length)
    return x.repeat_interleave(groups // x.shape[1], dim=1)


def ungroup_bc(grad: torch.Tensor, form: str, original: tuple) -> torch.Tensor:
    """A (batch, G, N, L) gradient back to the form (and shape) its B or C came in."""
    if form == "variable":
        return grad.sum(1)
    if form == "fixed":
        return grad.sum((0, 3))
    batch, groups, state, length = grad.shape
    return grad.reshape(batch, original[1], groups // original[1], state, length).sum(2)


def check_token_inputs(u, delta, A, B, C, D, z, delta_bias, order) -> None:
    """Check a token-major scan call (``usm.ssm.scan_tokens``): u, delta, z (batch, L, D); B, C
    (batch, L, N); ``order`` None or a permutation of the L positions."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, L, D), got shape {tuple(u.shape)}")
    batch, length, channels = u.shape
    state = A.shape[1] if A.dim() == 2 else -1
    for name, x, expected in (("delta", delta, u.shape), ("z", z, u.shape), ("A", A, (channels, state)),
                              ("B", B, (batch, length, state)), ("C", C, (batch, length, state)),
                              ("D", D, (channels,)), ("delta_bias", delta_bias, (channels,))):
        if x is not None and tuple(x.shape) != tuple(expected):
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(expected)} "
                             "(token-major: u (batch, L, D), A (D, N), B and C (batch, L, N))")
    if order is not None:
        if order.dim() != 1 or order.shape[0] != length or order.dtype != torch.long:
            raise ValueError(f"order must be a LongTensor of the {length} positions, got {order.dtype} "
                             f"of shape {tuple(order.shape)}")
        if not torch.bincount(order.cpu(), minlength=length).eq(1).all() or order.min() < 0:
            raise ValueError(f"order must visit each of the {length} positions exactly once")
