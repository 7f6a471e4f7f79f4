"""The numba kernels of ``usm.ssm.numba_cpu`` (imported only when that backend first runs).

They live at module level so that numba's on-disk cache (``cache=True``) holds them: the first
process compiles them (measured in docs/scan.md), later ones load them in about a second.

Layout: token-major. u, delta, z and the outputs are (batch, L, D), so the D channels of one
position are adjacent, as every linear layer writes them; A is (N, D). One work item owns one batch
element and a block of ``LANES`` adjacent channels, holds each of its N states as one vector (one
lane per channel) and walks the sequence in the order ``order`` gives: position ``order[t]`` is
the t-th step of the scan, so a 2D scan path is read in place, with no gathered copy.

B and C come in one of two forms, each a pair of arrays of which one is None (numba compiles a
kernel for each combination, with the other form's branches pruned):
- shared, ``(batch, G, L, N)``: one value per (position, state) for all channels of a group (G = 1:
  Mamba's variable B/C); a work item's channels lie in one group, so a value is broadcast to the lanes;
- per lane, ``(batch or 1, L or 1, N, D)``: a value for every channel (fixed B/C: ``(1, 1, N, D)``).
"""

import warnings

import numba
import numpy as np
from numba.core import types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from usm.ssm import _simd as v
from usm.ssm._simd import LANES

# Inlining the overload's closures trips a pedantic SSA check of numba's that warns (once per
# compiled variant) about the closures' own names; the compiled code is tested against the reference.
warnings.filterwarnings("ignore", message=".*_coefficient_forms", category=NumbaIRAssumptionWarning)


def jit(fn):
    return numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)(fn)


@numba.njit(inline="always")
def _work_item(item, channels):
    """(batch element, first channel) of work item ``item``."""
    blocks = channels // LANES
    return item // blocks, (item % blocks) * LANES


def _coefficient(shared, lanes, b, g, position, n, d0):
    """B_t or C_t of state n for the item's lanes: broadcast from the shared form, or its lanes
    (the other form is None; resolved when compiling, ``_coefficient_forms``)."""


@overload(_coefficient, inline="always", fastmath=True)
def _coefficient_forms(shared, lanes, b, g, position, n, d0):
    if isinstance(lanes, types.NoneType):
        return lambda shared, lanes, b, g, position, n, d0: v.splat(shared[b, g, position, n])
    return lambda shared, lanes, b, g, position, n, d0: v.load(
        lanes, (b if lanes.shape[0] > 1 else 0, position if lanes.shape[1] > 1 else 0, n, d0))


@numba.njit(inline="always", fastmath=True)
def _steps(u, delta, bias, order, softplus, b, d0, dts, dtus, slopes):
    """Step sizes dt = softplus(delta + bias) along the scan (row t: the t-th step), the drives
    dt * u and, unless ``slopes`` is empty (the forward needs none), the slopes d(dt)/d(delta)."""
    shift = v.load(bias, d0)
    for t in range(order.shape[0]):
        p = order[t]
        x = v.load(delta, (b, p, d0)) + shift
        if softplus:
            dt, slope = v.softplus(x)
        else:
            dt, slope = x, v.splat(np.float32(1.0))
        v.store(dts, (t, 0), dt)
        v.store(dtus, (t, 0), dt * v.load(u, (b, p, d0)))
        if slopes.shape[0] > 0:
            v.store(slopes, (t, 0), slope)


@jit
def forward(u, delta, A, Bs, Bl, Cs, Cl, Dv, z, bias, order, softplus, ckpt, out, last, saved, ungated):
    """Writes out, the last state, the state entering every chunk of ``ckpt`` steps (``saved``,
    (batch, chunks, N, D)) and, when z is given (else None), the output before its gate
    (``ungated``)."""
    batch, length, channels = u.shape
    state = A.shape[0]
    b_groups = 1 if Bs is None else Bs.shape[1]
    c_groups = 1 if Cs is None else Cs.shape[1]
    for item in numba.prange(batch * channels // LANES):
        b, d0 = _work_item(item, channels)
        gb, gc = d0 // (channels // b_groups), d0 // (channels // c_groups)
        dts = np.empty((length, LANES), dtype=np.float32)
        dtus = np.empty((length, LANES), dtype=np.float32)
        h = np.zeros((state, LANES), dtype=np.float32)
        _steps(u, delta, bias, order, softplus, b, d0, dts, dtus, np.empty((0, LANES), dtype=np.float32))
        skip = v.load(Dv, d0)
        for t in range(length):
            p = order[t]
            if t % ckpt == 0:
                for n in range(state):
                    v.store(saved, (b, t // ckpt, n, d0), v.load(h, (n, 0)))
            dt, dtu = v.load(dts, (t, 0)), v.load(dtus, (t, 0))
            y = skip * v.load(u, (b, p, d0))
            for n in range(state):
                hn = v.fma(v.exp(v.load(A, (n, d0)) * dt), v.load(h, (n, 0)),
                           dtu * _coefficient(Bs, Bl, b, gb, p, n, d0))
                v.store(h, (n, 0), hn)
                y = v.fma(_coefficient(Cs, Cl, b, gc, p, n, d0), hn, y)
            if z is not None:
                v.store(ungated, (b, p, d0), y)
                y = y * v.silu(v.load(z, (b, p, d0)))
            v.store(out, (b, p, d0), y)
        for n in range(state):
            v.store(last, (b, n, d0), v.load(h, (n, 0)))


@jit
def backward(u, delta, A, Bs, Bl, Cs, Cl, Dv, z, bias, order, softplus, ckpt, saved, ungated, dout, dlast,  # noqa: C901
             du, ddelta, dz, dA_part, dD_part, dbias_part, dBs_part, dBl_part, dCs_part, dCl_part):
    """Chunks last to first: each recomputes its states from the saved entry state, then walks
    back carrying dL/dh (one vector per state) and adds to dB and dC, dA, dD and d(delta_bias).
    Sums over the lanes (shared dB and dC) go to per-item partial buffers (``dBs_part``,
    (batch, blocks, L, N rounded up to whole vectors)); sums over the batch to per-element ones:
    the caller adds them up."""
    batch, length, channels = u.shape
    state = A.shape[0]
    b_groups = 1 if Bs is None else Bs.shape[1]
    c_groups = 1 if Cs is None else Cs.shape[1]
    for item in numba.prange(batch * channels // LANES):
        b, d0 = _work_item(item, channels)
        block = d0 // LANES
        gb, gc = d0 // (channels // b_groups), d0 // (channels // c_groups)
        dts = np.empty((length, LANES), dtype=np.float32)
        dtus = np.empty((length, LANES), dtype=np.float32)
        slopes = np.empty((length, LANES), dtype=np.float32)
        gys = np.empty((length, LANES), dtype=np.float32)  # dL/dy before the gate
        hs = np.empty((ckpt + 1, state, LANES), dtype=np.float32)  # a chunk's states, its entry first
        decays = np.empty((ckpt, state, LANES), dtype=np.float32)
        dh = np.empty((state, LANES), dtype=np.float32)
        dA_acc = np.zeros((state, LANES), dtype=np.float32)
        # a step's dL/dC and dL/dB for every state before the sum over the lanes; rows past N stay 0
        rows = (state + LANES - 1) // LANES * LANES
        g_cs = np.zeros((rows, LANES), dtype=np.float32)
        g_bs = np.zeros((rows, LANES), dtype=np.float32)
        _steps(u, delta, bias, order, softplus, b, d0, dts, dtus, slopes)
        for t in range(length):  # out = y * silu(z)
            p = order[t]
            gy = v.load(dout, (b, p, d0))
            if z is not None:
                zz = v.load(z, (b, p, d0))
                sig = v.sigmoid(zz)
                one = np.float32(1.0)
                v.store(dz, (b, p, d0), gy * v.load(ungated, (b, p, d0)) * sig * v.fma(zz, one - sig, one))
                gy = gy * zz * sig
            v.store(gys, (t, 0), gy)
        for n in range(state):
            v.store(dh, (n, 0), v.load(dlast, (b, n, d0)))
        skip = v.load(Dv, d0)
        dD_acc = v.splat(np.float32(0.0))
        dbias_acc = v.splat(np.float32(0.0))
        for c in range((length + ckpt - 1) // ckpt - 1, -1, -1):
            start = c * ckpt
            m = min(ckpt, length - start)
            for n in range(state):
                v.store(hs, (0, n, 0), v.load(saved, (b, c, n, d0)))
            for i in range(m):  # h_t = decay_t * h_(t-1) + dt_t * u_t * B_t
                t = start + i
                p = order[t]
                dt, dtu = v.load(dts, (t, 0)), v.load(dtus, (t, 0))
                for n in range(state):
                    decay = v.exp(v.load(A, (n, d0)) * dt)
                    v.store(decays, (i, n, 0), decay)
                    v.store(hs, (i + 1, n, 0), v.fma(decay, v.load(hs, (i, n, 0)),
                                                     dtu * _coefficient(Bs, Bl, b, gb, p, n, d0)))
            for i in range(m - 1, -1, -1):  # the sequential part: dL/dh, last step first
                t = start + i
                p = order[t]
                gy, dt, dtu = v.load(gys, (t, 0)), v.load(dts, (t, 0)), v.load(dtus, (t, 0))
                d_dtu = v.splat(np.float32(0.0))  # dL/d(dt * u), summed over the states
                d_log = v.splat(np.float32(0.0))  # dL/d(dt) through the decays
                for n in range(state):
                    a = v.load(A, (n, d0))
                    bn = _coefficient(Bs, Bl, b, gb, p, n, d0)
                    g_h = v.fma(_coefficient(Cs, Cl, b, gc, p, n, d0), gy, v.load(dh, (n, 0)))  # dL/dh_t
                    g_c = v.load(hs, (i + 1, n, 0)) * gy
                    g_b = g_h * dtu
                    # each branch touches only the buffer it tests: numba prunes a branch on a None argument
                    if dCs_part is not None:
                        v.store(g_cs, (n, 0), g_c)
                    if dCl_part is not None:
                        _add_lanes(dCl_part, b, p, n, d0, g_c)
                    if dBs_part is not None:
                        v.store(g_bs, (n, 0), g_b)
                    if dBl_part is not None:
                        _add_lanes(dBl_part, b, p, n, d0, g_b)
                    decay = v.load(decays, (i, n, 0))
                    g_log = g_h * v.load(hs, (i, n, 0)) * decay  # dL/d(dt_t * A), decay_t = exp(dt_t * A)
                    v.store(dA_acc, (n, 0), v.fma(g_log, dt, v.load(dA_acc, (n, 0))))
                    d_dtu = v.fma(g_h, bn, d_dtu)
                    d_log = v.fma(g_log, a, d_log)
                    v.store(dh, (n, 0), g_h * decay)  # dL/dh_(t-1) through h_t
                for n0 in range(0, state, LANES):  # sums over the lanes, LANES states at a time
                    if dCs_part is not None:
                        v.store(dCs_part, (b, block, p, n0), v.lane_sums(g_cs, n0))
                    if dBs_part is not None:
                        v.store(dBs_part, (b, block, p, n0), v.lane_sums(g_bs, n0))
                x = v.load(u, (b, p, d0))
                v.store(du, (b, p, d0), v.fma(gy, skip, d_dtu * dt))
                d_dt = v.fma(d_dtu, x, d_log) * v.load(slopes, (t, 0))
                v.store(ddelta, (b, p, d0), d_dt)
                dD_acc = v.fma(gy, x, dD_acc)
                dbias_acc = dbias_acc + d_dt
        for n in range(state):
            v.store(dA_part, (b, n, d0), v.load(dA_acc, (n, 0)))
        v.store(dD_part, (b, d0), dD_acc)
        v.store(dbias_part, (b, d0), dbias_acc)


@numba.njit(inline="always", fastmath=True)
def _add_lanes(part, b, position, n, d0, value):
    """part[b, position or 0, n, d0:d0 + LANES] += value (a per-lane gradient, per batch element)."""
    index = (b, position if part.shape[1] > 1 else 0, n, d0)
    v.store(part, index, v.load(part, index) + value)
