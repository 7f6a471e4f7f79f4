"""Backend "torch": a chunked pure-PyTorch selective scan with a hand-written backward, the fallback
where the compiled kernels cannot run (the meta device; CUDA without Triton or mamba_ssm).

    >>> import torch
    >>> from usm.ssm.torch_chunked import selective_scan_torch
    >>> u = torch.randn(2, 8, 16, requires_grad=True); A = -torch.rand(8, 4); B = torch.randn(2, 4, 16)
    >>> selective_scan_torch(u, torch.rand(2, 8, 16), A, B, B).sum().backward()

Why it is fast: everything that does not depend on the previous state is computed for a whole
chunk of positions at once (``exp(delta * A)``, ``delta * u * B``, the output contraction with C and
every gradient reduction, as einsums/bmm). Only the recurrence itself walks the sequence, and it is
one in-place ``addcmul`` per step on a contiguous (batch, D, N) slice, forwards for ``h`` and
backwards for ``dh``. Autograd records nothing per step, so the backward is O(L) with no graph
overhead. Like mamba_ssm's kernel, the forward keeps only the state entering each chunk and the
backward recomputes a chunk's decays and states from it, so memory is O(L * D), not O(L * D * N).

Work layout: (L, batch, G, D/G, N), with G the number of B/C groups (1 unless grouped), so the
slice of one position is contiguous and a group's channels are adjacent. B and C keep their own
compact form and are indexed by einsum subscripts: ``lbn`` (variable), ``lbgn`` (grouped),
``gdn`` (fixed, reshaped to (G, D/G, N)).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from usm.ssm.inputs import as_input_dtypes, check_inputs, dtypes_of

_SUBSCRIPT = {"variable": "lbn", "grouped": "lbgn", "fixed": "gdn"}
# Positions are processed in chunks of about this many (chunk, batch, D, N) floats: large enough that
# per-chunk Python overhead is negligible, small enough to stay in cache and to avoid page-faulting a
# fresh (L, batch, D, N) buffer on every call.
CHUNK_ELEMENTS = 1 << 20
# On a GPU the cost is launches, not cache: each chunk launches about ten kernels besides the one
# or two per position of the recurrence, and the CPU budget gives (8, 1536, 1024, 16) chunks of 5
# positions (three launches a position). 16x the budget (64 MiB buffers) gives chunks of 85.
CUDA_CHUNK_ELEMENTS = 1 << 24


def _to_work(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, D, L) -> contiguous float32 (L, batch, G, D/G)."""
    batch, channels, length = x.shape
    return x.float().permute(2, 0, 1).reshape(length, batch, groups, channels // groups).contiguous()


def _from_work(x: torch.Tensor) -> torch.Tensor:
    """(L, batch, G, D/G) -> (batch, D, L), contiguous like every other backend's output."""
    length, batch = x.shape[:2]
    return x.reshape(length, batch, -1).permute(1, 2, 0).contiguous()


def _bc_to_work(x: torch.Tensor, form: str, groups: int) -> torch.Tensor:
    x = x.float()
    if form == "variable":  # (batch, N, L) -> (L, batch, N)
        return x.permute(2, 0, 1).contiguous()
    if form == "grouped":  # (batch, G, N, L) -> (L, batch, G, N)
        return x.permute(3, 0, 1, 2).contiguous()
    return x.reshape(groups, -1, x.shape[-1])  # (D, N) -> (G, D/G, N)


def _bc_from_work(grad: torch.Tensor, form: str) -> torch.Tensor:
    if form == "variable":
        return grad.permute(1, 2, 0)
    if form == "grouped":
        return grad.permute(1, 2, 3, 0)
    return grad.reshape(-1, grad.shape[-1])


def _bc_broadcast(x: torch.Tensor, form: str) -> torch.Tensor:
    """The work form of B or C as a view broadcastable to (L, batch, G, D/G, N)."""
    if form == "variable":
        return x[:, :, None, None, :]
    if form == "grouped":
        return x[:, :, :, None, :]
    return x[None, None]


def _at(x: torch.Tensor, form: str, sl: slice) -> torch.Tensor:
    """The positions ``sl`` of B or C in work form (a fixed B or C has no position axis)."""
    return x if form == "fixed" else x[sl]


def chunk_length(shape, device: torch.device) -> int:
    """Positions per chunk so that one (chunk, batch, D, N) buffer holds about CHUNK_ELEMENTS floats
    (CUDA_CHUNK_ELEMENTS on CUDA)."""
    budget = CUDA_CHUNK_ELEMENTS if device.type == "cuda" else CHUNK_ELEMENTS
    return max(1, min(shape.length, budget // (shape.batch * shape.channels * shape.state)))


class _Chunks:
    """Per-chunk views of the work tensors, and the chunk's decay and states (recomputed on demand)."""

    def __init__(self, dt, u_w, A_w, B_w, b_form, chunk):
        self.dt, self.u, self.A, self.B, self.b_form, self.chunk = dt, u_w, A_w, B_w, b_form, chunk
        self.length = dt.shape[0]

    def slices(self):
        return [slice(s, min(s + self.chunk, self.length)) for s in range(0, self.length, self.chunk)]

    def decay_and_states(self, sl, h0):
        """exp(dt A) and h for the positions of ``sl``, starting from state ``h0`` (None = zero)."""
        dt = self.dt[sl]
        decay = (dt[..., None] * self.A).exp_()
        states = (dt * self.u[sl])[..., None] * _bc_broadcast(_at(self.B, self.b_form, sl), self.b_form)
        if h0 is not None:
            states[0].addcmul_(decay[0], h0)
        for t in range(1, states.shape[0]):  # h_t = decay_t * h_{t-1} + dt_t u_t B_t, in place
            states[t].addcmul_(decay[t], states[t - 1])
        return decay, states


def _no_autocast(device: torch.device):
    """Autocast off on the device (meta tensors, used to measure memory, know no autocast)."""
    return contextlib.nullcontext() if device.type == "meta" else torch.autocast(device.type, enabled=False)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape, chunk):
        groups = shape.bc_groups
        b_sub, c_sub = _SUBSCRIPT[shape.b_form], _SUBSCRIPT[shape.c_form]
        u_w = _to_work(u, groups)
        dt_raw = _to_work(delta, groups)
        if delta_bias is not None:
            dt_raw = dt_raw + delta_bias.float().reshape(groups, -1)
        dt = F.softplus(dt_raw) if delta_softplus else dt_raw
        A_w = A.float().reshape(groups, -1, shape.state)
        B_w = _bc_to_work(B, shape.b_form, groups)
        C_w = _bc_to_work(C, shape.c_form, groups)
        chunks = _Chunks(dt, u_w, A_w, B_w, shape.b_form, chunk)

        y = torch.empty_like(u_w)
        h, entry_states = None, []  # the state entering each chunk: all the backward keeps of h
        for sl in chunks.slices():
            entry_states.append(h)
            _, states = chunks.decay_and_states(sl, h)
            y[sl] = torch.einsum(f"lbgdn,{c_sub}->lbgd", states, _at(C_w, shape.c_form, sl))
            h = states[-1].clone()
        if D is not None:
            y += u_w * D.float().reshape(groups, -1)
        z_w = None if z is None else _to_work(z, groups)
        out = y if z_w is None else y * F.silu(z_w)

        ctx.shape, ctx.subs, ctx.softplus, ctx.chunk = shape, (b_sub, c_sub), delta_softplus, chunk
        ctx.has = (D is not None, z is not None, delta_bias is not None)
        ctx.dtypes = dtypes_of(u, delta, A, B, C, D, z, delta_bias)
        # The states entering chunks 1.. (chunk 0 starts from zero), saved like every other tensor so
        # saved-tensor hooks (activation-memory measurement, offloading) see them.
        entries = torch.stack(entry_states[1:]) if len(entry_states) > 1 else u_w.new_zeros(0)
        ctx.save_for_backward(u_w, dt_raw, dt, A_w, B_w, C_w, D, z_w, y if z is not None else None, entries)
        return _from_work(out).to(u.dtype), h.reshape(shape.batch, shape.channels, shape.state)

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        with _no_autocast(grad_out.device):  # float32 inside, as in the forward
            return _SelectiveScan._backward(ctx, grad_out, grad_last)

    @staticmethod
    def _backward(ctx, grad_out, grad_last):
        u_w, dt_raw, dt, A_w, B_w, C_w, D, z_w, y, entries = ctx.saved_tensors
        entry_states = [None, *entries.unbind(0)]
        shape, (b_sub, c_sub), (has_D, has_z, has_bias) = ctx.shape, ctx.subs, ctx.has
        groups, fixed_b, fixed_c = shape.bc_groups, shape.b_form == "fixed", shape.c_form == "fixed"
        dy = _to_work(grad_out, groups)
        grad_z = None
        if has_z:
            sig = torch.sigmoid(z_w)
            grad_z = dy * y * sig * (1 + z_w * (1 - sig))  # d silu(z)/dz = sig * (1 + z (1 - sig))
            dy = dy * z_w * sig
        grad_u = dy * D.float().reshape(groups, -1) if has_D else torch.zeros_like(u_w)
        grad_D = (dy * u_w).sum((0, 1)).reshape(-1) if has_D else None
        grad_dt = torch.empty_like(dt)
        grad_A = torch.zeros_like(A_w)
        grad_B, grad_C = torch.zeros_like(B_w), torch.zeros_like(C_w)

        chunks = _Chunks(dt, u_w, A_w, B_w, shape.b_form, ctx.chunk)
        # dL/dh flowing into the last position of the chunk from the positions after it.
        carry = None if grad_last is None else grad_last.float().reshape(u_w.shape[1:] + (shape.state,))
        for sl, h0 in reversed(list(zip(chunks.slices(), entry_states))):
            decay, states = chunks.decay_and_states(sl, h0)
            C_sl, dy_sl, dt_sl = _at(C_w, shape.c_form, sl), dy[sl], dt[sl]
            (grad_C.add_ if fixed_c else grad_C[sl].copy_)(torch.einsum(f"lbgdn,lbgd->{c_sub}", states, dy_sl))
            dh = dy_sl[..., None] * _bc_broadcast(C_sl, shape.c_form)  # direct part of dL/dh_t
            if carry is not None:
                dh[-1] += carry
            for t in range(dh.shape[0] - 2, -1, -1):  # dh_t += decay_{t+1} * dh_{t+1}, in place
                dh[t].addcmul_(decay[t + 1], dh[t + 1])
            carry = decay[0] * dh[0]

            # h_t = decay_t h_{t-1} + (dt u)_t B_t: gradients of the input term ...
            B_sl = _at(B_w, shape.b_form, sl)
            grad_b = torch.einsum(f"lbgdn,lbgd->{b_sub}", dh, dt_sl * u_w[sl])
            (grad_B.add_ if fixed_b else grad_B[sl].copy_)(grad_b)
            grad_dtu = torch.einsum(f"lbgdn,{b_sub}->lbgd", dh, B_sl)
            # ... and of the decay term, through log(decay) = dt * A; dh is not needed any more.
            dlog_decay = dh
            dlog_decay[1:].mul_(states[:-1])
            if h0 is None:
                dlog_decay[0].zero_()
            else:
                dlog_decay[0].mul_(h0)
            dlog_decay.mul_(decay)
            grad_A += torch.einsum("lbgdn,lbgd->gdn", dlog_decay, dt_sl)
            grad_dt[sl] = grad_dtu * u_w[sl] + torch.einsum("lbgdn,gdn->lbgd", dlog_decay, A_w)
            grad_u[sl] += grad_dtu * dt_sl

        if ctx.softplus:
            grad_dt *= torch.sigmoid(dt_raw)
        grad_bias = grad_dt.sum((0, 1)).reshape(-1) if has_bias else None
        grads = (
            _from_work(grad_u),
            _from_work(grad_dt),
            grad_A.reshape(shape.channels, shape.state),
            _bc_from_work(grad_B, shape.b_form),
            _bc_from_work(grad_C, shape.c_form),
            grad_D,
            None if grad_z is None else _from_work(grad_z),
            grad_bias,
        )
        grads = as_input_dtypes(grads, ctx.dtypes)
        return (*grads, None, None, None)


def selective_scan_torch(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False,
    chunk=None,
):
    """``chunk``: positions per chunk (default: ``chunk_length``)."""
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    chunk = chunk_length(shape, u.device) if chunk is None else max(1, int(chunk))
    # the work is float32 whatever autocast says: under bf16 autocast its einsums would drop to bf16,
    # far from the other backends, which all stay float32
    with _no_autocast(u.device):
        out, last = _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape, chunk)
    return (out, last) if return_last_state else out
