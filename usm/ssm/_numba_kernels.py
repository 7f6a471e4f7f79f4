"""The numba kernels of ``usm.ssm.numba_cpu`` (imported only when that backend first runs).

They live at module level so that numba's on-disk cache (``cache=True``) holds them: the first
process compiles them (measured in the README), later ones load them in well under a second.
"""


import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


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
    """log(1 + y) for y in [0, 1] as a polynomial (Cephes' logf after range reduction to
    [sqrt(1/2), sqrt(2)]); absolute error ~1e-7, relative ~1e-5 at worst. libm's log1p and exp, called once per position
    and channel, cost more than the whole vectorised update of the (N,) state."""
    if y < np.float32(1e-2):  # 1 + y would round away y's digits: the series, relative error < 2e-9
        return y * (np.float32(1.0) - y * (np.float32(0.5) - y * (np.float32(1.0 / 3.0) - np.float32(0.25) * y)))
    m = np.float32(1.0) + y
    e = np.float32(0.0)
    if m > np.float32(1.41421356):
        m = m * np.float32(0.5)
        e = np.float32(1.0)
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
    return x + r + np.float32(0.693359375) * e


@numba.njit(inline="always", fastmath=True)
def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): stable for every x."""
    return max(x, np.float32(0.0)) + _log1p_unit(_exp(-abs(x)))


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


@jit
def forward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, out, last, saved):
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, _, first = _work_item(item, channels, groups, channels_per_item)
        h = np.empty(state, dtype=np.float32)
        for d in range(first, first + channels_per_item):
            h[:] = 0.0
            for t in range(length):
                if t % ckpt == 0:
                    saved[b, d, t // ckpt, :] = h
                dt = delta[b, d, t] + bias[d]
                if softplus:
                    dt = _softplus(dt)
                x = u[b, d, t]
                dtu = dt * x
                y = np.float32(0.0)
                for n in range(state):
                    h[n] = _exp(dt * A[d, n]) * h[n] + dtu * B[b, g, t, n]
                    y += C[b, g, t, n] * h[n]
                y += Dv[d] * x
                if z.shape[0] > 0:
                    zz = z[b, d, t]
                    y *= zz * _sigmoid(zz)
                out[b, d, t] = y
            last[b, d, :] = h


@jit
def backward(u, delta, A, B, C, Dv, z, bias, softplus, channels_per_item, ckpt, saved, dout, dlast,
             du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part):
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[3]
    for item in numba.prange(batch * channels // channels_per_item):
        b, g, split, first = _work_item(item, channels, groups, channels_per_item)
        hs = np.empty((ckpt + 1, state), dtype=np.float32)  # states of one chunk, entry first
        decay = np.empty((ckpt, state), dtype=np.float32)
        dts = np.empty(ckpt, dtype=np.float32)
        dh = np.empty(state, dtype=np.float32)
        for d in range(first, first + channels_per_item):
            dh[:] = dlast[b, d, :]
            dA_acc = np.zeros(state, dtype=np.float32)
            dD_acc = np.float32(0.0)
            dbias_acc = np.float32(0.0)
            for c in range((length + ckpt - 1) // ckpt - 1, -1, -1):
                start = c * ckpt
                stop = min(start + ckpt, length)
                hs[0, :] = saved[b, d, c, :]
                for i in range(stop - start):  # recompute the chunk's decays and states
                    t = start + i
                    dt = delta[b, d, t] + bias[d]
                    if softplus:
                        dt = _softplus(dt)
                    dts[i] = dt
                    dtu = dt * u[b, d, t]
                    for n in range(state):
                        a = _exp(dt * A[d, n])
                        decay[i, n] = a
                        hs[i + 1, n] = a * hs[i, n] + dtu * B[b, g, t, n]
                for i in range(stop - start - 1, -1, -1):
                    t = start + i
                    x = u[b, d, t]
                    dt = dts[i]
                    gy = dout[b, d, t]
                    if z.shape[0] > 0:  # out = y * silu(z)
                        y = Dv[d] * x
                        for n in range(state):
                            y += C[b, g, t, n] * hs[i + 1, n]
                        zz = z[b, d, t]
                        sig = _sigmoid(zz)
                        dz[b, d, t] = gy * y * sig * (1.0 + zz * (1.0 - sig))
                        gy = gy * zz * sig
                    dD_acc += gy * x
                    dx = gy * Dv[d]
                    dtu = dt * x
                    d_dtu = np.float32(0.0)
                    d_dt = np.float32(0.0)
                    for n in range(state):
                        dC_part[b, split, g, t, n] += gy * hs[i + 1, n]
                        dhn = dh[n] + gy * C[b, g, t, n]
                        d_dtu += dhn * B[b, g, t, n]
                        dB_part[b, split, g, t, n] += dhn * dtu
                        dlog = dhn * hs[i, n] * decay[i, n]  # through log(decay) = dt * A
                        dA_acc[n] += dlog * dt
                        d_dt += dlog * A[d, n]
                        dh[n] = dhn * decay[i, n]
                    d_dt += d_dtu * x
                    dx += d_dtu * dt
                    if softplus:
                        d_dt *= _sigmoid(delta[b, d, t] + bias[d])
                    ddelta[b, d, t] = d_dt
                    dbias_acc += d_dt
                    du[b, d, t] = dx
            dA_part[b, d, :] = dA_acc
            dD_part[b, d] = dD_acc
            dbias_part[b, d] = dbias_acc
