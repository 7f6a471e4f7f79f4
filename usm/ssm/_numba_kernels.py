"""The numba kernels of ``usm.ssm.numba_cpu`` (imported only when that backend first runs).

They live at module level so that numba's on-disk cache (``cache=True``) holds them: the first
process compiles them (measured in the README), later ones load them in about a second.

Two kinds of loop, each written the way it vectorises:
- along the sequence (step sizes, output gates, the per-position gradients): plain numba loops
  over long 1-D arrays, which LLVM vectorises itself (``_exp`` and ``_log1p_unit`` are branch-free
  for that reason);
- the recurrence and its backward: explicit 8-lane vectors (``_simd``). Each block of 8 states
  is walked along the sequence on its own, its state (or dL/dstate) held in a register; the sums
  over the states (the output, dL/d(dt)) collect block by block in per-position buffers.
"""

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from usm.ssm import _simd as v
from usm.ssm._simd import LANES


def jit(fn):
    return numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)(fn)


@intrinsic
def _float_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _floor(typingctx, x):  # llvm.floor on float32 (math.floor returns an int64 and blocks vectorising)
    def codegen(context, builder, signature, args):
        return builder.call(builder.module.declare_intrinsic("llvm.floor", [ir.FloatType()]), [args[0]])
    return types.float32(types.float32), codegen


@numba.njit(inline="always", fastmath=True)
def _exp(x):
    """exp for float32 in a form LLVM vectorises (Cephes' expf: range reduction by ln 2, a degree-6
    polynomial, the power of two assembled from its bits); relative error ~2e-7 (tests compare it
    with the reference backend). libm's scalar exp is the bottleneck otherwise."""
    x = x if x > np.float32(-87.0) else np.float32(-87.0)
    x = x if x < np.float32(88.0) else np.float32(88.0)
    k = _floor(x * np.float32(1.44269504) + np.float32(0.5))
    f = x - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4) * f + np.float32(1.3981999507e-3)
    p = p * f + np.float32(8.3334519073e-3)
    p = p * f + np.float32(4.1665795894e-2)
    p = p * f + np.float32(1.6666665459e-1)
    p = p * f + np.float32(5.0000001201e-1)
    p = p * f * f + f + np.float32(1.0)
    return p * _float_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


@numba.njit(inline="always", fastmath=True)
def _log1p_unit(y):
    """log(1 + y) for y in [0, 1], branch-free so that a loop of it vectorises: Cephes' logf after
    range reduction to [sqrt(1/2), sqrt(2)] (absolute error ~1e-7), and for y < 1e-2, where 1 + y
    would round away y's digits, a 4-term series (relative error < 2e-9). libm's log1p and exp,
    called once per position and channel, cost more than the whole vectorised update of the state."""
    series = y * (np.float32(1.0) - y * (np.float32(0.5) - y * (np.float32(1.0 / 3.0) - np.float32(0.25) * y)))
    m = np.float32(1.0) + y
    high = m > np.float32(1.41421356)
    m = m * np.float32(0.5) if high else m
    e = np.float32(1.0) if high else np.float32(0.0)
    x = m - np.float32(1.0)
    z = x * x
    p = np.float32(7.0376836292e-2) * x - np.float32(1.1514610310e-1)
    p = p * x + np.float32(1.1676998740e-1)
    p = p * x - np.float32(1.2420140846e-1)
    p = p * x + np.float32(1.4249322787e-1)
    p = p * x - np.float32(1.6668057665e-1)
    p = p * x + np.float32(2.0000714765e-1)
    p = p * x - np.float32(2.4999993993e-1)
    p = p * x + np.float32(3.3333331174e-1)
    r = p * x * z - np.float32(2.12194440e-4) * e - np.float32(0.5) * z
    poly = x + r + np.float32(0.693359375) * e
    return series if y < np.float32(1e-2) else poly


@numba.njit(inline="always", fastmath=True)
def _softplus(x):
    """(softplus(x), its slope sigmoid(x)) from one exp: with e = exp(-|x|), softplus(x) =
    max(x, 0) + log(1 + e), stable for every x, and sigmoid(x) = 1 / (1 + e) or e / (1 + e)."""
    e = _exp(-abs(x))
    slope = (np.float32(1.0) if x >= np.float32(0.0) else e) / (np.float32(1.0) + e)
    return max(x, np.float32(0.0)) + _log1p_unit(e), slope


@numba.njit(inline="always", fastmath=True)
def _sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + _exp(-x))


@numba.njit(inline="always")
def _work_item(item, channels, groups, channels_per_item):
    """(batch element, group, split, first channel) of work item ``item``: items enumerate
    (batch, group, block of ``channels_per_item`` channels within the group)."""
    per_group = channels // groups
    splits = per_group // channels_per_item
    b = item // (groups * splits)
    g = (item // splits) % groups
    split = item % splits
    return b, g, split, g * per_group + split * channels_per_item


@numba.njit(inline="always", fastmath=True)
def _steps(delta, u, bias, softplus, dts, dtus, slopes):
    """The step sizes dt = softplus(delta + bias) of a channel's sequence, its drives dt * u and,
    unless ``slopes`` is empty (the forward needs none), the slopes d(dt)/d(delta)."""
    for t in range(delta.shape[0]):
        x = delta[t] + bias
        dt, slope = _softplus(x) if softplus else (x, np.float32(1.0))
        dts[t] = dt
        dtus[t] = dt * u[t]
        if slopes.shape[0] > 0:
            slopes[t] = slope


@jit
def forward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, out, last, saved, ungated):
    """Writes out, the last state, the state entering every chunk of ``ckpt`` positions (``saved``)
    and, when z is given, the output before its gate (``ungated``, which spares the backward a pass
    over the states). N (``B.shape[3]``) is a multiple of ``LANES``."""
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    gated = z.shape[0] > 0
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, _, first = _work_item(item, channels, groups, channels_per_item)
        dts = np.empty(length, dtype=np.float32)
        dtus = np.empty(length, dtype=np.float32)
        ys = np.empty(length, dtype=np.float32)
        y_lanes = np.empty((ckpt, LANES), dtype=np.float32)  # C * h of a chunk, summed over the blocks
        h_entry = np.empty(state, dtype=np.float32)
        no_slopes = np.empty(0, dtype=np.float32)
        Bt, Ct = B[b, g], C[b, g]
        for d in range(first, first + channels_per_item):
            _steps(delta[b, d], u[b, d], bias[d], softplus, dts, dtus, no_slopes)
            Ad, saved_d = A[d], saved[b, d]
            h_entry[:] = 0.0
            for c in range((length + ckpt - 1) // ckpt):
                start = c * ckpt
                m = min(ckpt, length - start)
                for j in range(0, state, LANES):
                    a = v.load(Ad, j)
                    h = v.load(h_entry, j)
                    v.store(saved_d, (c, j), h)
                    for i in range(m):
                        t = start + i
                        h = v.fma(v.exp(a * dts[t]), h, v.load(Bt, (t, j)) * dtus[t])
                        y = v.load(Ct, (t, j)) * h
                        v.store(y_lanes, (i, 0), y if j == 0 else y + v.load(y_lanes, (i, 0)))
                    v.store(h_entry, j, h)
                for i in range(m):
                    ys[start + i] = v.hsum(v.load(y_lanes, (i, 0)))
            last[b, d, :] = h_entry
            for t in range(length):
                y = ys[t] + Dv[d] * u[b, d, t]
                if gated:
                    ungated[b, d, t] = y
                    zz = z[b, d, t]
                    y *= zz * _sigmoid(zz)
                out[b, d, t] = y


@jit
def backward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, saved, ungated, dout, dlast,
             du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part):
    """Chunks last to first; in each, every block of 8 states recomputes its states from the saved
    entry state, then walks back carrying dL/dh in a register and adds to dB and dC (per work
    item), dA, and the per-position sums dL/d(dt * u) and dL/d(dt) that the last loop turns into
    du and d(delta)."""
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    gated = z.shape[0] > 0
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, split, first = _work_item(item, channels, groups, channels_per_item)
        hs = np.empty((ckpt + 1, LANES), dtype=np.float32)  # one block's states in a chunk, entry first
        decays = np.empty((ckpt, LANES), dtype=np.float32)
        dts = np.empty(length, dtype=np.float32)
        dtus = np.empty(length, dtype=np.float32)
        slopes = np.empty(length, dtype=np.float32)  # d(dt)/d(delta)
        gys = np.empty(length, dtype=np.float32)  # dL/dy before the gate
        d_dtus = np.empty(length, dtype=np.float32)  # dL/d(dt * u)
        d_logs = np.empty(length, dtype=np.float32)  # dL/d(dt) through the decays
        dh = np.empty(state, dtype=np.float32)
        dA_acc = np.empty(state, dtype=np.float32)
        Bt, Ct = B[b, g], C[b, g]
        dBt, dCt = dB_part[b, split, g], dC_part[b, split, g]
        for d in range(first, first + channels_per_item):
            _steps(delta[b, d], u[b, d], bias[d], softplus, dts, dtus, slopes)
            for t in range(length):  # out = y * silu(z)
                gy = dout[b, d, t]
                if gated:
                    zz = z[b, d, t]
                    sig = _sigmoid(zz)
                    dz[b, d, t] = gy * ungated[b, d, t] * sig * (np.float32(1.0) + zz * (np.float32(1.0) - sig))
                    gy = gy * zz * sig
                gys[t] = gy
            d_dtus[:] = 0.0
            d_logs[:] = 0.0
            dh[:] = dlast[b, d, :]
            dA_acc[:] = 0.0
            Ad, saved_d = A[d], saved[b, d]
            for c in range((length + ckpt - 1) // ckpt - 1, -1, -1):
                start = c * ckpt
                m = min(ckpt, length - start)
                for j in range(0, state, LANES):
                    a = v.load(Ad, j)
                    h = v.load(saved_d, (c, j))
                    v.store(hs, (0, 0), h)
                    for i in range(m):  # h_t = decay_t * h_(t-1) + dt_t * u_t * B_t
                        t = start + i
                        decay = v.exp(a * dts[t])
                        h = v.fma(decay, h, v.load(Bt, (t, j)) * dtus[t])
                        v.store(decays, (i, 0), decay)
                        v.store(hs, (i + 1, 0), h)
                    g_h = v.load(dh, j)
                    g_a = v.load(dA_acc, j)
                    for i in range(m - 1, -1, -1):  # the sequential part: dL/dh, last position first
                        t = start + i
                        gy, dt, dtu = gys[t], dts[t], dtus[t]
                        g_h = v.fma(v.load(Ct, (t, j)), gy, g_h)  # dL/dh_t
                        v.store(dCt, (t, j), v.fma(v.load(hs, (i + 1, 0)), gy, v.load(dCt, (t, j))))
                        v.store(dBt, (t, j), v.fma(g_h, dtu, v.load(dBt, (t, j))))
                        decay = v.load(decays, (i, 0))
                        g_log = g_h * v.load(hs, (i, 0)) * decay  # dL/d(dt_t * A), decay_t = exp(dt_t * A)
                        g_a = v.fma(g_log, dt, g_a)
                        d_dtus[t] += v.hsum(g_h * v.load(Bt, (t, j)))
                        d_logs[t] += v.hsum(g_log * a)
                        g_h = g_h * decay  # dL/dh_(t-1) through h_t
                    v.store(dh, j, g_h)
                    v.store(dA_acc, j, g_a)
            dD_acc = np.float32(0.0)
            dbias_acc = np.float32(0.0)
            for t in range(length):
                x = u[b, d, t]
                d_dtu = d_dtus[t]
                du[b, d, t] = gys[t] * Dv[d] + d_dtu * dts[t]
                dD_acc += gys[t] * x
                d_dt = (d_logs[t] + d_dtu * x) * slopes[t]
                ddelta[b, d, t] = d_dt
                dbias_acc += d_dt
            dA_part[b, d, :] = dA_acc
            dD_part[b, d] = dD_acc
            dbias_part[b, d] = dbias_acc
