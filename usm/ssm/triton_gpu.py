"""Triton selective scan (forward and backward): the GPU path that needs no compile step.

    >>> from usm.ssm.triton_gpu import available
    >>> isinstance(available()[0], bool)
    True

mamba_ssm's CUDA kernel needs a long nvcc build; Triton ships with PyTorch's CUDA wheels, so this
backend is what a plain ``pip install`` GPU machine gets. Same semantics and memory scheme as the
other backends (docs/scan.md): fp32 state and arithmetic whatever the input dtype, the state
entering every ``CHUNK``-th position saved, chunks recomputed in the backward. Every B/C form
works; the grouped and variable forms (those USM and ZigMa use) run ``BLOCK_D`` channels per
program, the fixed form one channel per program.

Triton is imported lazily (the CPU install does not need it). On the CPU the kernels run only
under Triton's interpreter (``TRITON_INTERPRET=1`` set before the first import of the kernels),
which is how the tests check them without a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os

import torch

from usm.ssm.inputs import as_input_dtypes, check_inputs, dtypes_of, grouped_bc, ungroup_bc, work_groups

CHUNK = 32  # positions between saved states
MAX_BLOCK_D = 64
MIN_BLOCK_D = 16  # below this a program's (BLOCK_D, BLOCK_N) tile no longer fills its warps


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a triton that does not match torch
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _kernels():
    from usm.ssm import _triton_kernels

    return _triton_kernels


def _fix_interpreter_index() -> None:
    """Make a scalar kernel argument usable in ``range()`` under Triton's interpreter with numpy >= 2.4.

    The interpreter holds a scalar as an array of shape (1,). Before Triton 3.7 its ``__index__`` was
    ``int(array)``, which numpy 2.4 refuses ("only 0-dimensional arrays can be converted to Python
    scalars"), so ``for t in range(length)`` failed on the GPU images' pairing (Triton 3.6, numpy 2.4).
    This adds, after the interpreter's own patches, an ``__index__`` that reads the one element; the
    interpreter restores both when the launch ends. Newer Triton does the same itself.
    """
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "usm_index_fix", False):
        return
    if "scope" not in inspect.signature(original).parameters:  # another interpreter layout: left as it is
        return

    def patch(tensor, scope, *args, **kwargs):
        original(tensor, scope, *args, **kwargs)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch.usm_index_fix = True
    interpreter._patch_lang_tensor = patch


def _block_d(per_group: int, batch: int = 1, channels: int = 0, programs: int = 0) -> int:
    """Channels per program: the largest power of two that divides a group's channels, at most
    MAX_BLOCK_D, halved (down to MIN_BLOCK_D) while the launch would have fewer than ``programs``
    programs. Each program walks the whole sequence, so a long scan of few sequences -- (2, 1536,
    4096) is 48 programs of 64 channels -- would leave most of a GPU's SMs idle.

        >>> _block_d(1536, batch=8), _block_d(1536, batch=2, channels=1536, programs=264)
        (64, 16)
    """
    block = 1
    while block * 2 <= MAX_BLOCK_D and per_group % (block * 2) == 0:
        block *= 2
    while block > MIN_BLOCK_D and batch * channels // block < programs:
        block //= 2
    return block


def target_programs(device: torch.device) -> int:
    """Programs a launch should have to occupy ``device``: two per SM (none off CUDA)."""
    if device.type != "cuda":
        return 0
    return 2 * torch.cuda.get_device_properties(device).multi_processor_count


def _strides(x: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(x.stride())


def _operands(shape, B, C, A32, D, delta_bias):
    """B and C in the kernels' (batch, G, N, L) layout (views where possible), and D and delta_bias
    as fp32 (A's fp32 copy stands in as a pointer the kernels never read when one is absent)."""
    groups = work_groups(shape)
    Bg, Cg = grouped_bc(B, shape.b_form, shape, groups), grouped_bc(C, shape.c_form, shape, groups)
    Dv = D.float().contiguous() if D is not None else A32
    bias = delta_bias.float().contiguous() if delta_bias is not None else A32
    return Bg, Cg, Dv, bias


def _on(device: torch.device):
    """Triton launches on the current CUDA device, not on its arguments' one: a scan of tensors on
    cuda:1 while cuda:0 is current would run GPU 0's kernel on GPU 1's pointers."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape):
        k = _kernels()
        batch, channels, length, state = shape.batch, shape.channels, shape.length, shape.state
        groups = work_groups(shape)
        per_group = channels // groups
        block_d = _block_d(per_group, batch, channels, target_programs(u.device))
        block_n = max(2, 1 << (state - 1).bit_length())
        n_chunks = (length + CHUNK - 1) // CHUNK
        u, delta = u.contiguous(), delta.contiguous()
        z = z.contiguous() if z is not None else None
        A32 = A.float().contiguous()
        Bg, Cg, Dv, bias = _operands(shape, B, C, A32, D, delta_bias)
        out = torch.empty(batch, channels, length, device=u.device, dtype=torch.float32)
        last = torch.empty(batch, channels, state, device=u.device, dtype=torch.float32)
        ckpt = torch.empty(batch, channels, n_chunks, state, device=u.device, dtype=torch.float32)
        grid = (batch, channels // block_d)
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=CHUNK)
        with _on(u.device):
            k.scan_forward[grid](u, delta, A32, Bg, Cg, Dv, z if z is not None else u, bias, out, last, ckpt,
                                 length, channels, state, per_group, n_chunks, *_strides(Bg), *_strides(Cg),
                                 **flags)
        ctx.save_for_backward(u, delta, A32, B, C, D, z, delta_bias, ckpt)
        ctx.info = (shape, flags, per_group, n_chunks)
        ctx.dtypes = dtypes_of(u, delta, A, B, C, D, z, delta_bias)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        k = _kernels()
        u, delta, A32, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        shape, flags, per_group, n_chunks = ctx.info
        batch, channels, length, state = shape.batch, shape.channels, shape.length, shape.state
        groups = work_groups(shape)
        block_d, block_n = flags["BLOCK_D"], flags["BLOCK_N"]
        n_blocks = channels // block_d
        Bg, Cg, Dv, bias = _operands(shape, B, C, A32, D, delta_bias)
        gy = grad_out.contiguous()
        glast = grad_last.float().contiguous() if grad_last is not None else \
            torch.zeros(batch, channels, state, device=u.device)
        new = functools.partial(torch.empty, device=u.device, dtype=torch.float32)
        scratch = new(batch, n_blocks, CHUNK, block_d, block_n)
        du, ddelta = new(batch, channels, length), new(batch, channels, length)
        dz = new(batch, channels, length) if z is not None else du
        dA, dD, dbias = new(batch, channels, state), new(batch, channels), new(batch, channels)
        dB, dC = new(batch, n_blocks, state, length), new(batch, n_blocks, state, length)
        with _on(u.device):
            k.scan_backward[(batch, n_blocks)](
                u, delta, A32, Bg, Cg, Dv, z if z is not None else u, bias, ckpt, gy, glast, scratch,
                du, ddelta, dz, dA, dD, dbias, dB, dC,
                length, channels, state, per_group, n_chunks, n_blocks, *_strides(Bg), *_strides(Cg), **flags)
        blocks_per_group = per_group // block_d
        dB, dC = (g.reshape(batch, groups, blocks_per_group, state, length).sum(2) for g in (dB, dC))
        grads = [du, ddelta, dA.sum(0), ungroup_bc(dB, shape.b_form, tuple(B.shape)),
                 ungroup_bc(dC, shape.c_form, tuple(C.shape)), dD.sum(0) if D is not None else None,
                 dz if z is not None else None, dbias.sum(0) if delta_bias is not None else None]
        grads = as_input_dtypes(grads, ctx.dtypes)
        return (*grads, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    ok, why = available()
    if not ok:
        raise RuntimeError(f"backend 'triton' needs triton ({why}); it comes with PyTorch's CUDA wheels")
    if u.device.type != "cuda" and not interpreted():
        raise ValueError(f"backend 'triton' runs on CUDA tensors (got {u.device}); on the CPU use 'numba' or "
                         "'torch', or set TRITON_INTERPRET=1 before the first scan to run Triton's interpreter")
    if interpreted():
        _fix_interpreter_index()
    out, last = _TritonScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, shape)
    return (out, last) if return_last_state else out  # the state stays float32, as mamba_ssm returns it
