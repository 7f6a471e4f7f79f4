"""Compiled CPU selective scan (numba): forward and backward, parallel over (batch x channels).

    >>> import torch
    >>> from usm.ssm.numba_cpu import selective_scan_numba
    >>> u = torch.randn(2, 8, 16); A = -torch.rand(8, 4); B = torch.randn(2, 4, 16)
    >>> selective_scan_numba(u, torch.rand_like(u), A, B, B).shape
    torch.Size([2, 8, 16])

Why compiled: the work of a scan is a loop over the sequence whose every step is a handful of
operations on a (N,) state. In PyTorch that loop costs a few dispatches per position, which is the
whole cost for the short, narrow scans of the tiny models (see ``results/reference/``). Here each
channel's loop runs in machine code: one work item owns a block of channels of one batch element
and one B/C group and walks L. The step sizes and gates are loops along the sequence that LLVM
vectorises; the recurrence and its backward hold each block of 8 states in one vector register
(``_simd``), N zero-padded to whole blocks (``_numba_kernels``).

Memory follows the ``torch`` backend and mamba_ssm's kernel: the forward keeps only the state
entering every ``CHECKPOINT``-th position (O(L * D * N / CHECKPOINT)) and, when z gates the output,
the output before its gate (O(L * D), so the backward need not rebuild it from the states); the
backward recomputes a chunk's states from its checkpoint, then walks it in reverse. Reductions
that several work items share (dB, dC across the channels of a group; dA, dD, d(delta_bias)
across the batch) go to per-item partial buffers summed afterwards in torch, so results are
deterministic.

numba is imported lazily and its kernels compile on first use (``cache=True`` keeps them on disk);
nothing is compiled at import. ``available()`` says whether numba imports.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from usm.ssm.inputs import check_inputs, grouped_bc, ungroup_bc, work_groups

CHECKPOINT = 32  # positions between saved states; the backward recomputes at most this many


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


def _padded(x: torch.Tensor, lanes: int) -> np.ndarray:
    """x with its last axis (the N states) zero-padded to a multiple of the kernels' vector width.
    A padded state has A = 0 and B = C = 0: it stays 0 and adds nothing to any output or gradient."""
    return _np(F.pad(x, (0, -x.shape[-1] % lanes)))


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


def _split(batch: int, groups: int, per_group: int, threads: int) -> int:
    """Channels per work item: enough items for every thread, and whole divisors of a group."""
    wanted = max(1, math.ceil(4 * threads / (batch * groups)))
    splits = next(s for s in range(min(wanted, per_group), 0, -1) if per_group % s == 0)
    return per_group // splits


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().contiguous().numpy()


class _NumbaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape):
        kernels = _kernels()
        lanes = kernels.LANES
        batch, channels, length, state = shape.batch, shape.channels, shape.length, shape.state
        groups = work_groups(shape)
        Bg, Cg = grouped_bc(B, shape.b_form, shape, groups), grouped_bc(C, shape.c_form, shape, groups)
        per_item = _split(batch, groups, channels // groups, _threads())
        arrays = [_np(u), _np(delta), _padded(A, lanes),
                  _padded(Bg.transpose(2, 3), lanes), _padded(Cg.transpose(2, 3), lanes),
                  _np(D) if D is not None else np.zeros(channels, np.float32),
                  _np(z) if z is not None else np.zeros((0, 0, 0), np.float32),
                  _np(delta_bias) if delta_bias is not None else np.zeros(channels, np.float32)]
        padded_state = arrays[2].shape[1]  # N rounded up to whole vectors
        out = np.empty((batch, channels, length), np.float32)
        last = np.empty((batch, channels, padded_state), np.float32)
        saved = np.empty((batch, channels, (length + CHECKPOINT - 1) // CHECKPOINT, padded_state), np.float32)
        ungated = np.empty_like(out) if z is not None else np.zeros((0, 0, 0), np.float32)
        kernels.forward(*arrays, bool(delta_softplus), per_item, CHECKPOINT, out, last, saved, ungated)
        tensors = [torch.from_numpy(a) for a in arrays]
        ctx.save_for_backward(*tensors, torch.from_numpy(saved), torch.from_numpy(ungated))
        ctx.info = (shape, bool(delta_softplus), per_item, groups, tuple(B.shape), tuple(C.shape))
        ctx.dtypes = tuple(None if x is None else x.dtype for x in (u, delta, A, B, C, D, z, delta_bias))
        return torch.from_numpy(out).to(u.dtype), torch.from_numpy(np.ascontiguousarray(last[..., :state]))

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        kernels = _kernels()
        *tensors, saved, ungated = ctx.saved_tensors
        shape, softplus, per_item, groups, b_shape, c_shape = ctx.info
        batch, channels, length, state = shape.batch, shape.channels, shape.length, shape.state
        padded_state = tensors[2].shape[1]
        splits = channels // groups // per_item
        _threads()
        dout = _np(grad_out)
        dlast = (_padded(grad_last, kernels.LANES) if grad_last is not None
                 else np.zeros((batch, channels, padded_state), np.float32))
        du, ddelta = np.empty_like(dout), np.empty_like(dout)
        dz = np.empty_like(dout) if ctx.dtypes[6] is not None else np.zeros((0, 0, 0), np.float32)
        dA = np.empty((batch, channels, padded_state), np.float32)
        dD, dbias = np.empty((batch, channels), np.float32), np.empty((batch, channels), np.float32)
        dB = np.zeros((batch, splits, groups, length, padded_state), np.float32)
        dC = np.zeros_like(dB)
        kernels.backward(*[t.numpy() for t in tensors], softplus, per_item, CHECKPOINT, saved.numpy(), ungated.numpy(),
                         dout, dlast, du, ddelta, dz, dA, dD, dbias, dB, dC)
        dB, dC = (torch.from_numpy(g[..., :state]).sum(1).transpose(2, 3) for g in (dB, dC))  # (batch, G, N, L)
        grads = [torch.from_numpy(du), torch.from_numpy(ddelta), torch.from_numpy(dA[..., :state]).sum(0),
                 ungroup_bc(dB, shape.b_form, b_shape), ungroup_bc(dC, shape.c_form, c_shape),
                 torch.from_numpy(dD).sum(0), torch.from_numpy(dz) if dz.size else None, torch.from_numpy(dbias).sum(0)]
        grads = [None if dtype is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return (*grads, None, None)


def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on the CPU; got tensors on {u.device} (use 'auto')")
    ok, why = available()
    if not ok:
        raise RuntimeError(f"backend 'numba' needs numba ({why}); pip install numba, or use backend='torch'")
    out, last = _NumbaScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape)
    return (out, last) if return_last_state else out  # the state stays float32, as mamba_ssm returns it
