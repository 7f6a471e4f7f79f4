"""Triton kernels of the selective scan (forward and backward). Imported only by ``usm.ssm.triton_gpu``.

One program owns ``BLOCK_D`` channels of one batch element, all inside one B/C group. Its (BLOCK_D,
N) state lives in registers and the program walks the sequence. The forward stores the state
entering every ``CHUNK``-th position. The backward walks the chunks in reverse: it recomputes a
chunk's states from its checkpoint into a per-program scratch buffer, then walks the chunk
backwards carrying dL/dh. Reductions that several programs share (dB and dC over the channels of
a group; dA, dD and d(delta_bias) over the batch) are written as per-program partial sums and
added up in torch, in a fixed order.

``TRITON_INTERPRET=1`` is read when the ``@triton.jit`` decorators below run, i.e. when this
module is first imported: set it before that to run the kernels on the CPU with numpy.
"""

import triton
import triton.language as tl


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _channel_block(A_ptr, D_ptr, bias_ptr, state, per_group, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's channels, state lanes, B/C group, and its rows of A, D and delta_bias (fp32)."""
    pid_d = tl.program_id(1).to(tl.int64)  # int64 offsets: batch x D x L may pass 2^31
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < state
    group = (pid_d * BLOCK_D) // per_group
    A = tl.load(A_ptr + d[:, None] * state + n[None, :], mask=n_ok[None, :], other=0.0).to(tl.float32)
    Dv = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d).to(tl.float32)
    return d, n, n_ok, group, A, Dv, bias


@triton.jit
def scan_forward(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, ckpt_ptr,
    length, channels, state, per_group, n_chunks,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # int64, as every offset derived from it (32 bits overflow at 2^31)
    d, n, n_ok, group, A, Dv, bias = _channel_block(A_ptr, D_ptr, bias_ptr, state, per_group, HAS_D, HAS_BIAS,
                                                    BLOCK_D, BLOCK_N)
    row = (pid_b * channels + d) * length  # (BLOCK_D,) offsets of position 0 in u, delta, z, out
    b_row = B_ptr + pid_b * sb_b + group * sb_g + n * sb_n
    c_row = C_ptr + pid_b * sc_b + group * sc_g + n * sc_n
    ckpt_row = ckpt_ptr + ((pid_b * channels + d[:, None]) * n_chunks) * state + n[None, :]
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for t in range(length):
        if t % CHUNK == 0:
            tl.store(ckpt_row + (t // CHUNK) * state, h, mask=n_ok[None, :])
        u = tl.load(u_ptr + row + t).to(tl.float32)
        dt = tl.load(delta_ptr + row + t).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt)
        Bt = tl.load(b_row + t * sb_l, mask=n_ok, other=0.0).to(tl.float32)
        Ct = tl.load(c_row + t * sc_l, mask=n_ok, other=0.0).to(tl.float32)
        h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
        y = tl.sum(h * Ct[None, :], axis=1)
        if HAS_D:
            y = y + Dv * u
        if HAS_Z:
            z = tl.load(z_ptr + row + t).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + row + t, y)
    tl.store(last_ptr + (pid_b * channels + d[:, None]) * state + n[None, :], h, mask=n_ok[None, :])


@triton.jit
def scan_backward(  # noqa: C901
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, gy_ptr, glast_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
    length, channels, state, per_group, n_chunks, n_blocks,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # int64, as every offset derived from it (32 bits overflow at 2^31)
    pid_d = tl.program_id(1).to(tl.int64)
    d, n, n_ok, group, A, Dv, bias = _channel_block(A_ptr, D_ptr, bias_ptr, state, per_group, HAS_D, HAS_BIAS,
                                                    BLOCK_D, BLOCK_N)
    tile_ok = n_ok[None, :]
    row = (pid_b * channels + d) * length
    b_row = B_ptr + pid_b * sb_b + group * sb_g + n * sb_n
    c_row = C_ptr + pid_b * sc_b + group * sc_g + n * sc_n
    state_tile = (pid_b * channels + d[:, None]) * state + n[None, :]  # (BLOCK_D, BLOCK_N) in (batch, D, N)
    ckpt_row = ckpt_ptr + ((pid_b * channels + d[:, None]) * n_chunks) * state + n[None, :]
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    scratch = scratch_ptr + (pid_b * n_blocks + pid_d) * CHUNK * BLOCK_D * BLOCK_N + tile
    partial = (pid_b * n_blocks + pid_d) * state * length + n * length  # (BLOCK_N,) rows of dB, dC partials

    dh = tl.load(glast_ptr + state_tile, mask=tile_ok, other=0.0).to(tl.float32)
    acc_A = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    acc_D = tl.zeros((BLOCK_D,), dtype=tl.float32)
    acc_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for back in range(n_chunks):
        chunk = n_chunks - 1 - back
        start = chunk * CHUNK
        size = tl.minimum(length - start, CHUNK)
        entry = tl.load(ckpt_row + chunk * state, mask=tile_ok, other=0.0)
        h = entry
        for i in range(size):  # recompute the chunk's states
            t = start + i
            dt = tl.load(delta_ptr + row + t).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            u = tl.load(u_ptr + row + t).to(tl.float32)
            Bt = tl.load(b_row + t * sb_l, mask=n_ok, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            tl.store(scratch + i * BLOCK_D * BLOCK_N, h)
        for j in range(size):  # then walk it backwards
            i = size - 1 - j
            t = start + i
            raw = tl.load(delta_ptr + row + t).to(tl.float32)
            if HAS_BIAS:
                raw = raw + bias
            dt = raw
            if SOFTPLUS:
                dt = _softplus(raw)
            u = tl.load(u_ptr + row + t).to(tl.float32)
            Bt = tl.load(b_row + t * sb_l, mask=n_ok, other=0.0).to(tl.float32)
            Ct = tl.load(c_row + t * sc_l, mask=n_ok, other=0.0).to(tl.float32)
            h_t = tl.load(scratch + i * BLOCK_D * BLOCK_N)
            previous = tl.load(scratch + tl.maximum(i - 1, 0) * BLOCK_D * BLOCK_N)
            h_prev = tl.where(i > 0, previous, entry)
            g = tl.load(gy_ptr + row + t).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + row + t).to(tl.float32)
                y = tl.sum(h_t * Ct[None, :], axis=1)
                if HAS_D:
                    y = y + Dv * u
                s = tl.sigmoid(z)
                tl.store(dz_ptr + row + t, g * y * (s + z * s * (1.0 - s)))
                g = g * z * s
            du = tl.zeros((BLOCK_D,), dtype=tl.float32)
            if HAS_D:
                acc_D += g * u
                du = g * Dv
            tl.store(dC_ptr + partial + t, tl.sum(g[:, None] * h_t, axis=0), mask=n_ok)
            dh += g[:, None] * Ct[None, :]
            decay = tl.exp(dt[:, None] * A)
            g_decay = dh * h_prev * decay  # d/d(dt * A) of exp(dt * A)
            acc_A += g_decay * dt[:, None]
            g_in = tl.sum(dh * Bt[None, :], axis=1)  # d/d(dt * u)
            tl.store(dB_ptr + partial + t, tl.sum(dh * (dt * u)[:, None], axis=0), mask=n_ok)
            g_dt = tl.sum(g_decay * A, axis=1) + g_in * u
            du += g_in * dt
            if SOFTPLUS:
                g_dt = g_dt * tl.sigmoid(raw)
            if HAS_BIAS:
                acc_bias += g_dt
            tl.store(du_ptr + row + t, du)
            tl.store(ddelta_ptr + row + t, g_dt)
            dh = dh * decay
    tl.store(dA_ptr + state_tile, acc_A, mask=tile_ok)
    tl.store(dD_ptr + pid_b * channels + d, acc_D)
    tl.store(dbias_ptr + pid_b * channels + d, acc_bias)
