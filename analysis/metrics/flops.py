"""One FLOP counter for every model: fvcore's tracer plus handlers for what it does not know.

    python -m analysis flops --model USM-B/1 [--image-size 256] [--json]

What it counts: the forward pass at batch 1, one multiply-add = one FLOP (fvcore's convention,
the one DiT's published GFLOPs use), of
- every matmul-like operator fvcore knows (linear, conv, einsum, matmul, layer norms),
- ``scaled_dot_product_attention`` (2 * B * heads * Lq * Lk * head_dim) and ``rms_norm``
  (4 per element, 5 with a weight), which fvcore does not know,
- the selective scan at 9 * B * L * D * N + B * D * L (inside ``usm.ssm.counting_scans()`` every
  scan is one traceable op; the Mamba authors' formula).
Element-wise operators (activations, additions, the time embedding's sin/cos) are not counted, by
the same convention; any other operator the tracer meets is reported under ``uncounted``.
``--image-size`` is in pixels; models of a latent study see image_size / 8 (SD-VAE).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch

from usm.models.registry import build_model
from usm.ssm import counting_scans, scan_flops

SCAN_OP = "prim::PythonOp.SelectiveScanForCounting"
# Element-wise or data-movement operators: no multiply-adds by the convention above.
ELEMENTWISE = {
    "aten::mul", "aten::add", "aten::sub", "aten::div", "aten::exp", "aten::cos", "aten::sin", "aten::silu",
    "aten::gelu", "aten::neg", "aten::rsub", "aten::sigmoid", "aten::softplus", "aten::pow", "aten::sqrt",
    "aten::mean", "aten::sum", "aten::clone", "aten::zeros_like", "aten::new_zeros", "aten::index",
    "aten::repeat", "aten::expand_as", "aten::fill_", "aten::ones_like", "aten::add_", "aten::mul_",
    "aten::numpy_T", "aten::embedding", "aten::pixel_shuffle",
    "prim::PythonOp._Permute",  # usm.scan_orders.permute: a gather along a scan path
}
# fvcore's names for its operator classes, ours for the extra ones.
CATEGORY = {"scaled_dot_product_attention": "attention", "rms_norm": "norm", "layer_norm": "norm",
            SCAN_OP.removeprefix("prim::"): "scan"}  # fvcore drops the "prim::" of op names


def _shape(value) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return get_shape(value)


def _sdpa(inputs, outputs):
    q, k = _shape(inputs[0]), _shape(inputs[1])  # (..., Lq, d), (..., Lk, d)
    return 2 * math.prod(q[:-1]) * k[-2] * q[-1]


def _rms_norm(inputs, outputs):
    weight = inputs[2].type().kind() != "NoneType" if len(inputs) > 2 else False
    return math.prod(_shape(inputs[0])) * (5 if weight else 4)


def _scan(inputs, outputs):
    batch, channels, length = _shape(inputs[0])
    return scan_flops(batch, channels, length, _shape(inputs[2])[1])


HANDLES = {"aten::scaled_dot_product_attention": _sdpa, "aten::rms_norm": _rms_norm, SCAN_OP: _scan}


@dataclass
class FlopReport:
    model: str
    image_size: int | None
    input_shape: list[int]
    gflops: float
    gflops_scan: float
    params: int
    by_operator: dict[str, float] = field(default_factory=dict)  # GFLOPs by category
    uncounted: dict[str, int] = field(default_factory=dict)  # operator -> calls
    counts: str = ("forward, batch 1, multiply-adds; scan at 9*B*L*D*N + B*D*L; element-wise ops not counted")

    def to_dict(self) -> dict:
        return asdict(self)


def count_flops(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond=None, name: str = "",
                image_size: int | None = None) -> FlopReport:
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    with counting_scans(), torch.no_grad():
        analysis = FlopCountAnalysis(model, (x, t) if cond is None else (x, t, cond)).set_op_handle(**HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        total = analysis.total()
        by_operator = Counter()
        for op, flops in analysis.by_operator().items():
            by_operator[CATEGORY.get(op, op)] += flops
        unsupported = {op: n for op, n in analysis.unsupported_ops().items() if op not in ELEMENTWISE}
    return FlopReport(model=name, image_size=image_size, input_shape=list(x.shape), gflops=total / 1e9,
                      gflops_scan=by_operator.get("scan", 0) / 1e9,
                      params=sum(p.numel() for p in model.parameters()),
                      by_operator={k: v / 1e9 for k, v in sorted(by_operator.items())}, uncounted=unsupported)


def format_report(report: FlopReport) -> str:
    lines = [f"{report.model}: {report.gflops:.2f} GFLOPs (scan {report.gflops_scan:.2f}), "
             f"{report.params:,} parameters, input {tuple(report.input_shape)}"]
    lines += [f"  {op:<12} {g:10.4f}" for op, g in sorted(report.by_operator.items(), key=lambda kv: -kv[1])]
    lines.append(f"  uncounted: {report.uncounted or 'none'}")
    lines.append(f"  counts: {report.counts}")
    return "\n".join(lines)


def count_registered(name: str, image_size: int | None = None, latent: bool = True, **model_args) -> FlopReport:
    """FLOPs of a registered model; ``image_size`` in pixels (latent side = image_size / 8)."""
    from usm.cli import UsageError

    if image_size is not None:
        if image_size < 1 or (latent and image_size % 8):
            raise UsageError(f"--image-size {image_size}: must be a positive multiple of 8 for SD-VAE latents "
                             "(the latent is 8x smaller), or add --pixels")
        model_args.setdefault("input_size", image_size // 8 if latent else image_size)
    try:
        model = build_model(name, **model_args)
    except (ValueError, TypeError) as exc:  # unknown or mistyped arguments, sizes the model cannot take
        raise UsageError(f"{name} cannot be built with {model_args}: {exc}") from None
    side, channels = model.config["input_size"], model.config["in_channels"]
    x, t = torch.randn(1, channels, side, side), torch.rand(1)
    return count_flops(model, x, t, example_cond(model), name=name, image_size=image_size)


def example_cond(model, batch: int = 1, context_tokens: int = 77):
    """A ``cond`` of the right kind for the model: class 0, or 77 zero context tokens (CLIP's length)."""
    conditioner = getattr(model, "conditioner", None)  # a model without one (the UNet control) is unconditional
    mode = conditioner.mode if conditioner is not None else "none"
    if mode == "class":
        return torch.zeros(batch, dtype=torch.long)
    if mode == "text":
        return torch.zeros(batch, context_tokens, model.config["d_context"])
    return None
