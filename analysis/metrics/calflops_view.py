"""What calflops counts, operator by operator and module by module: the tool behind published GFLOPs.

    >>> import torch
    >>> ops = calflops_ops(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.SiLU()), torch.randn(2, 8))
    >>> [(op.module, op.kind, op.flops, op.seen) for op in ops]
    [('0', 'linear', 128, True), ('1', 'activation', 8, True)]

calflops 0.3.2 (PyPI ``calflops``; the USM paper's GFLOPs come from it, see docs/metrics.md) counts
by replacing functions (and so does this module, for the length of a count): ``F.linear`` and the
convolutions at 2 FLOPs per multiply-add (convolutions plus one per bias and output), activations at
one per element, norms at 4 per element (5 with a weight), pools and upsampling at one per input
element, softmax, ``torch.matmul`` /
``Tensor.matmul`` / ``addmm`` / ``einsum`` / ``torch.mul`` / ``torch.add``. What it does not replace
it never sees: the ``@`` operator (``Tensor.__matmul__``), ``*`` and ``+``,
``scaled_dot_product_attention``, ``rms_norm``, and whatever runs outside PyTorch (CUDA and Triton
kernels; our compiled scans). A ``TorchFunctionMode`` besides reports the products calflops does not
see (``seen=False``, counted at 2 per multiply-add, so that a rule can put them back), and every
operator is named by its module (the owner of the weight it reads, else the innermost module
running). ``tests/test_calflops_view.py`` checks it against calflops itself on every model family.
"""

from __future__ import annotations

import collections
import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class CountedOp:
    module: str  # dotted module path ('' for the model itself)
    kind: str  # linear, conv, activation, norm, softmax, matmul, einsum, elementwise, attention, ...
    flops: int  # as calflops counts it (2 per multiply-add for products); for seen=False, 2 per multiply-add
    seen: bool  # whether calflops 0.3.2 counts this operator


def _conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> int:
    dims = x.dim() - 2
    stride, dilation = _tuple(stride, dims), _tuple(dilation, dims)
    if isinstance(padding, str):
        padding = (0,) * dims if padding == "valid" else tuple(d * (k - 1) // 2 for d, k in
                                                                zip(dilation, weight.shape[2:]))
    padding = _tuple(padding, dims)
    out = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1
           for size, p, d, k, s in zip(x.shape[2:], padding, dilation, weight.shape[2:], stride)]
    positions = x.shape[0] * math.prod(out)
    macs = math.prod(weight.shape[2:]) * x.shape[1] * (weight.shape[0] // groups) * positions
    return 2 * macs + (weight.shape[0] * positions if bias is not None else 0)


def _conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1) -> int:
    # calflops' rule as it stands: products over the input positions; the bias over the positions a
    # forward convolution of the same settings would output (not the transposed convolution's)
    dims = x.dim() - 2
    stride, dilation, padding = _tuple(stride, dims), _tuple(dilation, dims), _tuple(padding, dims)
    out = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1
           for size, p, d, k, s in zip(x.shape[2:], padding, dilation, weight.shape[2:], stride)]
    macs = math.prod(weight.shape[2:]) * x.shape[1] * (weight.shape[1] // groups) * x.shape[0] * math.prod(x.shape[2:])
    return 2 * macs + (weight.shape[1] * x.shape[0] * math.prod(out) if bias is not None else 0)


def _tuple(value, dims: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _norm(x, *args, weight=None, **kwargs) -> int:
    return x.numel() * (5 if weight is not None else 4)


def _batch_norm(x, mean, var, weight=None, bias=None, training=False, *a, **k) -> int:
    return x.numel() * ((5 if weight is not None else 4) if training else (2 if weight is not None else 1))


def _upsample(x, size=None, scale_factor=None, *a, **k) -> int:
    # calflops' rule as it stands: the output size alone when given (batch and channels left out),
    # else the input's elements (its scale-factor product is computed and dropped)
    if size is not None:
        return math.prod(size) if isinstance(size, (tuple, list)) else int(size)
    return x.numel()


def _einsum(equation: str, *operands) -> int:
    equation = equation.replace(" ", "")
    letters = list(dict.fromkeys(c for c in equation if c.isalpha()))
    equation = equation.translate({ord(c): 97 + i for i, c in enumerate(letters)})
    path = np.einsum_path(equation, *[np.zeros(o.shape) for o in operands], optimize="optimal")[1]
    return int(float(next(line for line in path.split("\n") if "optimized flop" in line.lower()).split(":")[-1]))


def _broadcast_numel(a, b) -> int:
    shapes = [tuple(x.shape) for x in (a, b) if torch.is_tensor(x)]
    return math.prod(torch.broadcast_shapes(*shapes)) if shapes else 1


def _matmul_macs(a, b) -> int:
    return math.prod(a.shape) * b.shape[-1]


# (namespace, attribute) -> (kind, calflops' count): the functions calflops 0.3.2 replaces, replaced
# here the same way for the length of a count, so that exactly the calls it sees are seen
_ACTIVATIONS = ("relu", "prelu", "elu", "leaky_relu", "relu6", "silu", "gelu")
SEEN = {
    (F, "linear"): ("linear", lambda x, w, b=None: 2 * x.numel() * w.shape[0]),
    **{(F, f"conv{d}d"): ("conv", _conv) for d in (1, 2, 3)},
    **{(F, f"conv_transpose{d}d"): ("conv", _conv_transpose) for d in (1, 2, 3)},
    **{(F, name): ("activation", lambda x, *a, **k: x.numel()) for name in _ACTIVATIONS},
    (F, "layer_norm"): ("norm", lambda x, shape, weight=None, *a, **k: _norm(x, weight=weight)),
    (F, "group_norm"): ("norm", lambda x, groups, weight=None, *a, **k: _norm(x, weight=weight)),
    (F, "instance_norm"): ("norm", lambda x, mean=None, var=None, weight=None, *a, **k: _norm(x, weight=weight)),
    (F, "batch_norm"): ("norm", _batch_norm),
    **{(F, f"{kind}_pool{d}d"): ("pool", lambda x, *a, **k: x.numel())
       for kind in ("avg", "max", "adaptive_avg", "adaptive_max") for d in (1, 2, 3)},
    **{(F, name): ("upsample", _upsample) for name in ("upsample", "interpolate")},
    (F, "softmax"): ("softmax", lambda x, *a, **k: x.numel()),
    (F, "embedding"): ("embedding", lambda *a, **k: 0),
    (torch, "matmul"): ("matmul", lambda a, b, **k: 2 * _matmul_macs(a, b)),
    (torch.Tensor, "matmul"): ("matmul", lambda a, b, **k: 2 * _matmul_macs(a, b)),
    (torch, "addmm"): ("matmul", lambda c, a, b, **k: 2 * _matmul_macs(a, b) + c.numel()),
    (torch.Tensor, "addmm"): ("matmul", lambda c, a, b, **k: 2 * _matmul_macs(a, b) + c.numel()),
    (torch, "baddbmm"): ("matmul", lambda c, a, b, **k: 2 * _matmul_macs(a, b) + c.numel()),
    (torch, "einsum"): ("einsum", _einsum),
    **{(space, name): ("elementwise", lambda a, b, **k: _broadcast_numel(a, b))
       for space in (torch, torch.Tensor) for name in ("mul", "add")},
}
# Products, whichever way they are spelt (the ``@`` operator and ``Tensor.matmul`` reach PyTorch as
# one function), and attention: a second pass records them all, and those calflops' pass did not
# see are the ones it misses.
PRODUCTS = {
    torch.matmul: ("matmul", lambda a, b, **k: 2 * _matmul_macs(a, b)),
    torch.Tensor.matmul: ("matmul", lambda a, b, **k: 2 * _matmul_macs(a, b)),
    F.scaled_dot_product_attention: ("attention", lambda q, k, v, *a, **kw: 2 * 2 * math.prod(q.shape[:-1])
                                     * k.shape[-2] * q.shape[-1]),
}


class _Recorder:
    """Names each operator by its module: the owner of a weight it reads, else the innermost module
    running (forward hooks keep the stack)."""

    def __init__(self, model: torch.nn.Module):
        self.owners, self.running, self.ops = {}, [""], []
        for name, module in model.named_modules():
            for parameter in module.parameters(recurse=False):
                self.owners.setdefault(parameter.untyped_storage().data_ptr(), name)
        self.hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: self._enter(name))
                      for name, m in model.named_modules() if name]
        self.hooks += [m.register_forward_hook(lambda mod, args, out: self._leave())
                       for name, m in model.named_modules() if name]

    def _enter(self, name: str) -> None:
        self.running.append(name)

    def _leave(self) -> None:
        self.running.pop()  # a hook returns None: anything else would replace the module's output

    def record(self, kind: str, count, args, kwargs, seen: bool) -> None:
        module = self.running[-1]
        for value in (*args, *kwargs.values()):
            if torch.is_tensor(value) and value.untyped_storage().data_ptr() in self.owners:
                module = self.owners[value.untyped_storage().data_ptr()]
                break
        self.ops.append(CountedOp(module, kind, int(count(*args, **kwargs)), seen))

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


class _Products(TorchFunctionMode):
    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS:
            self.recorder.record(*PRODUCTS[func], args, kwargs, seen=False)
        return func(*args, **kwargs)


def _forward(model, inputs, recorder: _Recorder, replace: bool) -> list[CountedOp]:
    """One forward, with calflops' replacements (``replace``) or under the products mode."""
    from usm.ssm import counting_scans

    originals = {key: getattr(*key) for key in SEEN}

    def counted(original, kind, count):
        def call(*args, **kwargs):
            recorder.record(kind, count, args, kwargs, seen=True)
            return original(*args, **kwargs)
        return call

    try:
        if replace:
            for (space, name), (kind, count) in SEEN.items():
                setattr(space, name, counted(originals[space, name], kind, count))
        mode = contextlib.nullcontext() if replace else _Products(recorder)
        with torch.no_grad(), counting_scans(), mode:
            model.eval()(*inputs)
    finally:
        for (space, name), original in originals.items():
            setattr(space, name, original)
    return recorder.ops


def calflops_ops(model: torch.nn.Module, *inputs) -> list[CountedOp]:
    """Every operator one forward of ``model(*inputs)`` runs that calflops counts (``seen``), and
    every product it misses (``seen=False``), with its module; the scan inside
    ``usm.ssm.counting_scans`` (calflops sees no scan: the reference's runs in CUDA)."""
    recorder = _Recorder(model)
    try:
        seen = list(_forward(model, inputs, recorder, replace=True))
        recorder.ops = []
        products = _forward(model, inputs, recorder, replace=False)
    finally:
        recorder.close()
    remaining = collections.Counter((op.module, op.flops) for op in seen if op.kind in ("matmul", "attention"))
    missed = []
    for op in products:
        if remaining[op.module, op.flops]:
            remaining[op.module, op.flops] -= 1
        else:
            missed.append(op)
    return seen + missed
