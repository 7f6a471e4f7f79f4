"""Selective scan (Mamba-1) with interchangeable backends.

    >>> import torch
    >>> from usm.ssm import selective_scan
    >>> u = torch.randn(2, 8, 16); A = -torch.rand(8, 4); B = torch.randn(2, 4, 16)
    >>> selective_scan(u, torch.rand_like(u), A, B, B, backend="reference").shape
    torch.Size([2, 8, 16])

Semantics (docs/scan.md, mamba_ssm's ``selective_scan_fn`` convention)::

    delta <- softplus(delta + delta_bias)            (when asked)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   h_{-1} = 0
    y_t    = sum_N(C_t * h_t) + D * u_t;   y *= silu(z)   (when z is given)

Work is done in float32; the output has u's dtype. Backends (``BACKENDS``):

- ``reference``: a per-step loop, obviously correct (O(L) backward through autograd);
- ``torch``: vectorised pure PyTorch with a hand-written backward, the fallback everywhere;
- ``numba``: compiled CPU kernels (forward and backward), the default on the CPU when numba imports;
- ``triton``: Triton kernels (forward and backward) for CUDA tensors, no compile step (Triton comes
  with PyTorch's CUDA wheels); on the CPU only under ``TRITON_INTERPRET=1`` (the tests);
- ``mamba_ssm``: mamba_ssm's fused CUDA kernel (optional ``cuda`` extra);
- ``auto``: for CUDA tensors ``mamba_ssm`` when it imports, else ``triton`` when it imports and
  passes its probe (once per device: a tiny scan compiled, launched and checked against
  ``reference``; a failure falls back to ``torch`` with one warning naming it), else ``torch``; for
  CPU tensors ``numba`` when it imports, else ``torch``. ``last_backend()`` names the backend the
  latest call ran.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch

from usm.scan_orders import permute
from usm.ssm.mamba_cuda import mamba_ssm_status, selective_scan_mamba_ssm
from usm.ssm.numba_cpu import available as numba_available
from usm.ssm.numba_cpu import scan_tokens_numba, selective_scan_numba
from usm.ssm.reference import selective_scan_reference
from usm.ssm.torch_chunked import selective_scan_torch
from usm.ssm.triton_gpu import available as triton_available
from usm.ssm.triton_gpu import selective_scan_triton

BACKENDS = {
    "reference": selective_scan_reference,
    "torch": selective_scan_torch,
    "numba": selective_scan_numba,
    "triton": selective_scan_triton,
    "mamba_ssm": selective_scan_mamba_ssm,
}
_LAST = {"backend": None}


def probe(name: str, device: str) -> str | None:
    """Run backend ``name`` once on a tiny scan on ``device`` (compile and launch), forward and
    backward, against ``reference``: None if it agrees, else what went wrong, in one line."""
    try:
        gen = torch.Generator().manual_seed(0)
        u, delta, z = (torch.randn(1, 4, 8, generator=gen) for _ in range(3))
        A = -torch.rand(4, 2, generator=gen)
        B, C = (torch.randn(1, 2, 8, generator=gen) for _ in range(2))
        expected = selective_scan_reference(u, delta, A, B, C, None, z, None, True, False)
        on = [t.to(device).requires_grad_() for t in (u, delta)]
        got = BACKENDS[name](on[0], on[1], A.to(device), B.to(device), C.to(device), None, z.to(device), None,
                             True, False)
        got.sum().backward()
        if not torch.allclose(got.detach().float().cpu(), expected, atol=1e-3, rtol=1e-3):
            gap = (got.detach().float().cpu() - expected).abs().max()
            return f"its output differs from the reference scan's by {gap:.3g}"
    except Exception as exc:  # a compile error, a missing driver feature, a launch failure
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@functools.lru_cache(maxsize=None)
def triton_works(device: str) -> bool:
    """Whether the Triton scan passes its probe on ``device`` (asked once per device; a failure is
    said once, as a warning, and ``auto`` falls back to the torch backend)."""
    problem = probe("triton", device)
    if problem:
        warnings.warn(f"the Triton scan failed its probe on {device} ({problem}): backend 'auto' uses the torch "
                      "scan instead; backend='triton' would show the full error", RuntimeWarning, stacklevel=3)
    return problem is None


def resolve_backend(backend: str, device) -> str:
    """The concrete backend ``backend`` means for tensors on ``device``."""
    if backend == "auto":
        kind = getattr(device, "type", str(device))
        if kind == "cuda":
            if mamba_ssm_status()[0]:
                return "mamba_ssm"
            return "triton" if triton_available()[0] and triton_works(str(torch.device(device))) else "torch"
        return "numba" if kind == "cpu" and numba_available()[0] else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {sorted(BACKENDS) + ['auto']}")
    return backend


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False,
    backend="auto",
):
    if _COUNTING:
        out = SelectiveScanForCounting.apply(u, delta, A, B, C, D, z, delta_bias)
        return (out, u.new_zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float32)) if return_last_state else out
    name = resolve_backend(backend, u.device)
    _LAST["backend"] = name
    return BACKENDS[name](u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# Backends that read token-major inputs along a scan path in place (the rest get gathered copies).
TOKEN_BACKENDS = {"numba": scan_tokens_numba}


def scan_tokens(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, order=None,
                backend="auto"):
    """The scan in token-major layout, along a path: u, delta, z (batch, L, D), the way linear
    layers write them; B, C (batch, L, N); A (D, N). Step t of the scan reads position ``order[t]``
    (None: 0, 1, ..., L-1), and the output (batch, L, D) stands at the inputs' positions. It is
    ``selective_scan`` on the inputs gathered along ``order`` and transposed to (batch, D, L), with
    the result put back -- which is what backends without a token-major kernel run.

        >>> u = torch.randn(2, 6, 8); A = -torch.rand(8, 4); B = torch.randn(2, 6, 4)
        >>> order = torch.tensor([0, 1, 2, 5, 4, 3])
        >>> y = scan_tokens(u, torch.rand_like(u), A, B, B, order=order, backend="reference")
        >>> y.shape
        torch.Size([2, 6, 8])
    """
    name = resolve_backend(backend, u.device)
    if name in TOKEN_BACKENDS and not _COUNTING:
        _LAST["backend"] = name
        return TOKEN_BACKENDS[name](u, delta, A, B, C, D, z, delta_bias, delta_softplus, order)
    if order is None or _COUNTING:  # the order changes no count: counting traces no gathers
        along = lambda x: None if x is None else x.transpose(1, 2)
        back = lambda y: y.transpose(1, 2)
    else:
        inverse = torch.argsort(order)
        along = lambda x: None if x is None else permute(x, order, inverse, 1).transpose(1, 2)
        back = lambda y: permute(y.transpose(1, 2), inverse, order, 1)
    return back(selective_scan(along(u), along(delta), A, along(B), along(C), D, along(z), delta_bias,
                               delta_softplus, backend=name))


def last_backend() -> str | None:
    """The concrete backend of the latest ``selective_scan`` call (None before the first)."""
    return _LAST["backend"]


# --------------------------------------------------------------------------------------------------
# FLOP counting. Tracing counters (fvcore) cannot look inside the scan, and its cost is defined by a
# formula anyway (9 * B * L * D * N multiply-adds, + B * D * L for the D term). Inside
# ``counting_scans()`` every scan becomes this one traceable op, which a counter handles by name
# (analysis.metrics.flops) from the shapes of u (B, D, L) and A (D, N), its first and third inputs. It returns
# zeros: values after it are meaningless, shapes and the operators that run are those of the real model.

_COUNTING = False


class SelectiveScanForCounting(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, *rest):
        """Takes every scan input, so a tracer keeps the layers that compute them (x_proj, dt_proj)."""
        return torch.zeros_like(u)

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - counting is forward only
        return (None,) * 8


def scan_flops(batch: int, channels: int, length: int, state: int) -> int:
    return 9 * batch * length * channels * state + batch * channels * length


@contextlib.contextmanager
def counting_scans():
    global _COUNTING
    previous, _COUNTING = _COUNTING, True
    try:
        yield
    finally:
        _COUNTING = previous


__all__ = ["BACKENDS", "TOKEN_BACKENDS", "counting_scans", "last_backend", "resolve_backend", "scan_flops",
           "scan_tokens", "selective_scan", "mamba_ssm_status"]
