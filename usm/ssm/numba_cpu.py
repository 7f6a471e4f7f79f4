"""Compiled CPU selective scan (numba): forward and backward, parallel over (batch x channel blocks).

    >>> import torch
    >>> from usm.ssm.numba_cpu import selective_scan_numba
    >>> u = torch.randn(2, 8, 16); A = -torch.rand(8, 4); B = torch.randn(2, 4, 16)
    >>> selective_scan_numba(u, torch.rand_like(u), A, B, B).shape
    torch.Size([2, 8, 16])

Why compiled: the work of a scan is a loop over the sequence whose every step is a handful of
operations on a (D, N) state. In PyTorch that loop costs a few dispatches per position, which is the
whole cost for the short, narrow scans of the tiny models (docs/scan.md). Here the loop runs in
machine code: one work item owns one batch element and 16 adjacent channels, holds each state n of
them in one 16-lane vector (``_simd``) and walks L (``_numba_kernels``).

The kernels are token-major: u, delta, z and the output are (batch, L, D), the layout linear layers
write, and they walk the positions in any given order. ``scan_tokens_numba`` is that form, used by
``usm.ssm.scan_tokens`` (a 2D mixer's scan path is read in place, with no gathered or transposed
copy); ``selective_scan_numba`` is mamba_ssm's (batch, D, L) form on top of it, with every B/C form.

Memory follows the ``torch`` backend and mamba_ssm's kernel: the forward keeps only the state
entering every ``CHUNK``-th step (O(L * D * N / CHUNK)) and, when z gates the output,
the output before its gate (O(L * D)); the backward recomputes a chunk's states from its checkpoint,
then walks it in reverse. Reductions that several work items share (dB, dC across channel blocks;
dA, dD, d(delta_bias) across the batch) go to per-item partial buffers summed afterwards in torch,
so results are deterministic and independent of the thread count.

numba is imported lazily and its kernels compile on first use (``cache=True`` keeps them on disk);
nothing is compiled at import. ``available()`` says whether numba imports.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from usm.ssm.inputs import check_inputs, check_token_inputs

# Positions between saved states (the name triton_gpu.py uses too). 16 keeps the backward's
# per-chunk buffers (the chunk's states and decays, 2 x 16 x N x 16 floats) within a core's L1
# cache at N = 16.
CHUNK = 16


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    try:
        import numba  # noqa: F401
    except Exception as exc:  # ImportError, or a numba built against another numpy
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def _kernels():
    """The kernels module (its ``forward``, ``backward`` and vector width ``LANES``)."""
    from usm.ssm import _numba_kernels

    return _numba_kernels


def _threads() -> int:
    """The CPU threads torch was given (its share of the machine), within numba's pool.

    Starting numba's OpenMP pool (its first ``set_num_threads``) resets the OpenMP thread count
    that torch shares to all the machine's CPUs; torch's count is read first and put back, or a
    process given one CPU would run torch on two threads from its first scan on."""
    import numba

    wanted = torch.get_num_threads()
    threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return threads


def _np(x: torch.Tensor | None) -> np.ndarray | None:
    """float32 C-contiguous numpy of x; None for None or an empty placeholder (the kernels prune the
    branches of an absent input at compile time)."""
    if x is None or x.numel() == 0:
        return None
    return x.detach().float().contiguous().numpy()


def _tensor(x: np.ndarray | None) -> torch.Tensor:
    return torch.from_numpy(x) if x is not None else torch.zeros(0)


class _NumbaScan(torch.autograd.Function):
    """The kernels on token-major float32 inputs whose channels are a multiple of ``LANES``:
    u, delta, z (batch, L, D); A (N, D); each of B and C as (shared, per-lane), one of them empty."""

    @staticmethod
    def forward(ctx, u, delta, A, Bs, Bl, Cs, Cl, D, z, bias, order, softplus):
        kernels = _kernels()
        _threads()
        batch, length, channels = u.shape
        state = A.shape[0]
        arrays = [_np(x) for x in (u, delta, A, Bs, Bl, Cs, Cl, D, z, bias)]
        out = np.empty((batch, length, channels), np.float32)
        last = np.empty((batch, state, channels), np.float32)
        saved = np.empty((batch, (length + CHUNK - 1) // CHUNK, state, channels), np.float32)
        ungated = np.empty_like(out) if z is not None else None
        kernels.forward(*arrays, order.numpy(), bool(softplus), CHUNK, out, last, saved, ungated)
        ctx.save_for_backward(*map(_tensor, arrays), order, torch.from_numpy(saved), _tensor(ungated))
        ctx.softplus, ctx.gated = bool(softplus), z is not None
        return torch.from_numpy(out), torch.from_numpy(last)

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        kernels = _kernels()
        *tensors, order, saved, ungated = ctx.saved_tensors
        u, _, A, Bs, Bl, Cs, Cl = tensors[:7]
        batch, length, channels = u.shape
        state = A.shape[0]
        _threads()
        dout = _np(grad_out)
        dlast = _np(grad_last) if grad_last is not None else np.zeros((batch, state, channels), np.float32)
        du, ddelta = np.empty_like(dout), np.empty_like(dout)
        dz = np.empty_like(dout) if ctx.gated else None
        dA = np.empty((batch, state, channels), np.float32)
        dD, dbias = np.empty((batch, channels), np.float32), np.empty((batch, channels), np.float32)
        blocks = channels // kernels.LANES

        def partials(shared, lanes):  # (shared, per-lane) gradient buffers, one of them None
            if shared.numel():  # the kernel writes LANES states at a time
                rows = -(-state // kernels.LANES) * kernels.LANES
                return np.empty((batch, blocks, length, rows), np.float32), None
            return None, np.zeros((batch,) + tuple(lanes.shape[1:]), np.float32)

        dBs, dBl = partials(Bs, Bl)
        dCs, dCl = partials(Cs, Cl)
        kernels.backward(*map(_np, tensors), order.numpy(), ctx.softplus, CHUNK, saved.numpy(), _np(ungated),
                         dout, dlast, du, ddelta, dz, dA, dD, dbias, dBs, dBl, dCs, dCl)

        def reduced(shared, lanes, d_shared, d_lanes):  # back to the shapes B or C came in
            if shared.numel():
                groups = shared.shape[1]
                grad = torch.from_numpy(d_shared)[..., :state]
                return grad.reshape(batch, groups, blocks // groups, length, state).sum(2), None
            grad = torch.from_numpy(d_lanes)
            return None, grad if lanes.shape[0] == batch else grad.sum(0, keepdim=True)

        grads_b, grads_c = reduced(Bs, Bl, dBs, dBl), reduced(Cs, Cl, dCs, dCl)
        return (torch.from_numpy(du), torch.from_numpy(ddelta), torch.from_numpy(dA).sum(0), *grads_b, *grads_c,
                torch.from_numpy(dD).sum(0), torch.from_numpy(dz) if ctx.gated else None,
                torch.from_numpy(dbias).sum(0), None, None)


def _check_backend(u) -> None:
    if u.device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on the CPU; got tensors on {u.device} (use 'auto')")
    ok, why = available()
    if not ok:
        raise RuntimeError(f"backend 'numba' needs numba ({why}); pip install numba, or use backend='torch'")


def _lanes_padded(x: torch.Tensor | None, pad: int) -> torch.Tensor | None:
    """x in float32 with its last axis (the channels) zero-padded by ``pad``. A padded channel has
    u = delta = A = 0 and no B, C or output gradient: its state stays 0 and it adds to nothing."""
    if x is None:
        return None
    x = x.float()
    return F.pad(x, (0, pad)) if pad else x


def _run(u, delta, A, b_forms, c_forms, D, z, delta_bias, softplus, order):
    """The kernels on token-major u, delta, z (batch, L, D) and A (D, N), B and C given as
    (shared, per-lane) pairs of tensors (None for the absent one) in float32; pads the channels
    to whole vectors and strips them again. Returns (out, last state (batch, N, D)), float32."""
    channels = u.shape[2]
    pad = -channels % _kernels().LANES
    padded = functools.partial(_lanes_padded, pad=pad)
    empty = torch.zeros(0, 0, 0, 0)
    Bs, Bl = b_forms
    Cs, Cl = c_forms
    D = D if D is not None else u.new_zeros(channels)
    bias = delta_bias if delta_bias is not None else u.new_zeros(channels)
    out, last = _NumbaScan.apply(
        padded(u), padded(delta), padded(A.float().T), Bs.float() if Bs is not None else empty,
        padded(Bl) if Bl is not None else empty, Cs.float() if Cs is not None else empty,
        padded(Cl) if Cl is not None else empty, padded(D), padded(z), padded(bias), order, softplus)
    return (out[..., :channels], last[..., :channels]) if pad else (out, last)


def _kernel_bc(x: torch.Tensor, form: str, channels: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A (batch, D, L)-convention B or C as the kernels' (shared, per-lane) pair. Groups whose
    channels are not whole vectors are expanded to one value per channel."""
    lanes = _kernels().LANES
    if form == "variable":  # (batch, N, L)
        return x.transpose(1, 2).unsqueeze(1), None
    if form == "fixed":  # (D, N)
        return None, x.T[None, None]
    per_group = channels // x.shape[1]  # grouped: (batch, G, N, L)
    if per_group % lanes == 0:
        return x.transpose(2, 3), None
    return None, x.repeat_interleave(per_group, dim=1).permute(0, 3, 2, 1)


def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    _check_backend(u)
    tokens = lambda x: None if x is None else x.float().transpose(1, 2)  # (batch, D, L) -> (batch, L, D)
    order = torch.arange(shape.length)
    out, last = _run(tokens(u), tokens(delta), A, _kernel_bc(B, shape.b_form, shape.channels),
                     _kernel_bc(C, shape.c_form, shape.channels), D, tokens(z), delta_bias, delta_softplus, order)
    out = out.transpose(1, 2).contiguous().to(u.dtype)
    last = last.transpose(1, 2).contiguous()  # the state stays float32, as mamba_ssm returns it
    return (out, last) if return_last_state else out


def scan_tokens_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, order=None):
    """The scan on token-major inputs (``usm.ssm.scan_tokens``): u, delta, z (batch, L, D), B and
    C (batch, L, N), walked in ``order``; the output (batch, L, D) in the inputs' positions."""
    check_token_inputs(u, delta, A, B, C, D, z, delta_bias, order)
    _check_backend(u)
    order = torch.arange(u.shape[1]) if order is None else order.cpu()
    out, _ = _run(u.float(), delta.float(), A, (B.unsqueeze(1), None), (C.unsqueeze(1), None), D,
                  z, delta_bias, delta_softplus, order)
    return out.to(u.dtype)
