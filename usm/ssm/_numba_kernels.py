"""The numba kernels of ``usm.ssm.numba_cpu`` (imported only when that backend first runs).

They live at module level so that numba's on-disk cache (``cache=True``) holds them: the first
process compiles them (measured in the README), later ones load them in well under a second.

Importing this module asks LLVM for one interleaved copy per vectorised loop
(``-force-vector-interleave=1``): the loops here run over the N = 16 states, and LLVM's default
for AVX2 (4 copies of 8 lanes, 32 elements) leaves such a loop to its 4-lane SSE remainder. The
option is LLVM's, so it holds for numba code compiled later in the same process too; it changes
how loops are unrolled, never what they compute.
"""

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

llvmlite.binding.set_option("", "-force-vector-interleave=1")


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
def _chunk_steps(delta, u, bias, softplus, start, m, dts, dtus, slopes):
    """One chunk's step sizes dt = softplus(delta + bias), drives dt * u and, unless ``slopes`` is
    empty (the forward needs none), the slopes d(dt)/d(delta), position by position in a loop of
    its own: the transcendental work vectorises along the sequence, away from the recurrence."""
    for i in range(m):
        x = delta[start + i] + bias
        dt, slope = _softplus(x) if softplus else (x, np.float32(1.0))
        dts[i] = dt
        dtus[i] = dt * u[start + i]
        if slopes.shape[0] > 0:
            slopes[i] = slope


# The kernels below walk each channel's sequence in chunks of ``ckpt`` positions, and split every
# chunk into loops that each do one thing: the step sizes (vectorised along the sequence), the
# recurrence (vectorised across the N states), the gating (along the sequence again). A loop that
# writes one array and reads few is one LLVM vectorises; one fused loop that updates several
# arrays at once stays scalar (it would need too many run-time overlap checks).

@jit
def forward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, out, last, saved, ungated):
    """Writes out, the last state, the state entering every chunk (``saved``) and, when z is given,
    the output before its gate (``ungated``, which spares the backward a pass over the states)."""
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    gated = z.shape[0] > 0
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, _, first = _work_item(item, channels, groups, channels_per_item)
        h = np.empty(state, dtype=np.float32)
        dts = np.empty(ckpt, dtype=np.float32)
        dtus = np.empty(ckpt, dtype=np.float32)
        ys = np.empty(ckpt, dtype=np.float32)
        no_slopes = np.empty(0, dtype=np.float32)
        Bt, Ct = B[b, g], C[b, g]
        for d in range(first, first + channels_per_item):
            h[:] = 0.0
            Ad = A[d]
            for c in range((length + ckpt - 1) // ckpt):
                start = c * ckpt
                m = min(ckpt, length - start)
                saved[b, d, c, :] = h
                _chunk_steps(delta[b, d], u[b, d], bias[d], softplus, start, m, dts, dtus, no_slopes)
                for i in range(m):  # the recurrence, vectorised across the states
                    dt, dtu = dts[i], dtus[i]
                    y = np.float32(0.0)
                    for n in range(state):
                        h[n] = _exp(dt * Ad[n]) * h[n] + dtu * Bt[start + i, n]
                        y += Ct[start + i, n] * h[n]
                    ys[i] = y
                for i in range(m):
                    t = start + i
                    y = ys[i] + Dv[d] * u[b, d, t]
                    if gated:
                        ungated[b, d, t] = y
                        zz = z[b, d, t]
                        y *= zz * _sigmoid(zz)
                    out[b, d, t] = y
            last[b, d, :] = h


@jit
def backward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, saved, ungated, dout, dlast,
             du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part):
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    gated = z.shape[0] > 0
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, split, first = _work_item(item, channels, groups, channels_per_item)
        hs = np.empty((ckpt + 1, state), dtype=np.float32)  # states of one chunk, entry first
        decay = np.empty((ckpt, state), dtype=np.float32)
        dhs = np.empty((ckpt, state), dtype=np.float32)  # dL/dh_t of the chunk's positions
        dts = np.empty(ckpt, dtype=np.float32)
        dtus = np.empty(ckpt, dtype=np.float32)
        slopes = np.empty(ckpt, dtype=np.float32)  # d(dt)/d(delta)
        gys = np.empty(ckpt, dtype=np.float32)  # dL/dy before the gate
        d_dtus = np.empty(ckpt, dtype=np.float32)
        d_logs = np.empty(ckpt, dtype=np.float32)  # dL/d(dt) through the decays
        dh = np.empty(state, dtype=np.float32)
        dA_acc = np.empty(state, dtype=np.float32)
        Bt, Ct = B[b, g], C[b, g]
        dBt, dCt = dB_part[b, split, g], dC_part[b, split, g]
        for d in range(first, first + channels_per_item):
            dh[:] = dlast[b, d, :]
            dA_acc[:] = 0.0
            dD_acc = np.float32(0.0)
            dbias_acc = np.float32(0.0)
            Ad = A[d]
            for c in range((length + ckpt - 1) // ckpt - 1, -1, -1):
                start = c * ckpt
                m = min(ckpt, length - start)
                _chunk_steps(delta[b, d], u[b, d], bias[d], softplus, start, m, dts, dtus, slopes)
                for i in range(m):
                    dt = dts[i]
                    for n in range(state):
                        decay[i, n] = _exp(dt * Ad[n])
                hs[0, :] = saved[b, d, c, :]
                for i in range(m):  # recompute the chunk's states from its entry state
                    dtu = dtus[i]
                    for n in range(state):
                        hs[i + 1, n] = decay[i, n] * hs[i, n] + dtu * Bt[start + i, n]
                for i in range(m):  # out = y * silu(z)
                    t = start + i
                    gy = dout[b, d, t]
                    if gated:
                        zz = z[b, d, t]
                        sig = _sigmoid(zz)
                        dz[b, d, t] = gy * ungated[b, d, t] * sig * (np.float32(1.0) + zz * (np.float32(1.0) - sig))
                        gy = gy * zz * sig
                    gys[i] = gy
                for i in range(m - 1, -1, -1):  # the one sequential part: dL/dh, last position first
                    gy = gys[i]
                    for n in range(state):  # two loops: faster than one that writes both
                        dhs[i, n] = dh[n] + gy * Ct[start + i, n]
                    for n in range(state):
                        dh[n] = dhs[i, n] * decay[i, n]
                for i in range(m):
                    gy = gys[i]
                    for n in range(state):
                        dCt[start + i, n] += gy * hs[i + 1, n]
                for i in range(m):  # h_t = decay_t * h_(t-1) + dt_t * u_t * B_t
                    dtu = dtus[i]
                    s = np.float32(0.0)
                    for n in range(state):
                        dBt[start + i, n] += dtu * dhs[i, n]
                        s += dhs[i, n] * Bt[start + i, n]
                    d_dtus[i] = s
                for i in range(m):  # decay_t = exp(dt_t * A): through its logarithm
                    dt = dts[i]
                    s = np.float32(0.0)
                    for n in range(state):
                        dlog = dhs[i, n] * hs[i, n] * decay[i, n]
                        dA_acc[n] += dlog * dt
                        s += dlog * Ad[n]
                    d_logs[i] = s
                for i in range(m):
                    t = start + i
                    x = u[b, d, t]
                    d_dtu = d_dtus[i]
                    du[b, d, t] = gys[i] * Dv[d] + d_dtu * dts[i]
                    dD_acc += gys[i] * x
                    d_dt = (d_logs[i] + d_dtu * x) * slopes[i]
                    ddelta[b, d, t] = d_dt
                    dbias_acc += d_dt
            dA_part[b, d, :] = dA_acc
            dD_part[b, d] = dD_acc
            dbias_part[b, d] = dbias_acc
