"""analysis.metrics.calflops_view against calflops itself, and the rules that rebuild the paper's GFLOPs
(analysis.metrics.flop_conventions) pinned to the modules they name."""

import contextlib
import io

import pytest
import torch

from analysis.metrics.calflops_view import calflops_ops
from analysis.metrics.flop_conventions import RULES, breakdown, family, matched_modules
from analysis.metrics.flops import example_cond
from usm.models.registry import build_model
from usm.ssm import counting_scans

TINY = {"USM-T/1": {}, "ZigMa-T/2": {}, "DiT-T/2": {}, "UNet-T": {},
        "USM-T/1 text": {"has_text": True, "d_context": 32}, "ZigMa-T/2 text": {"has_text": True, "d_context": 32}}


def tiny(key: str):
    torch.manual_seed(0)
    model = build_model(key.split()[0], **TINY[key]).eval()
    side, channels = model.config["input_size"], model.config["in_channels"]
    inputs = (torch.randn(1, channels, side, side), torch.rand(1), example_cond(model, context_tokens=7))
    return model, tuple(value for value in inputs if value is not None)  # calflops moves every argument


@pytest.mark.parametrize("key", sorted(TINY))
def test_the_view_counts_what_calflops_counts(key):
    import calflops  # a dev dependency (pip install -e ".[dev]")
    model, inputs = tiny(key)
    with counting_scans(), contextlib.redirect_stdout(io.StringIO()):
        flops, _, _ = calflops.calculate_flops(model, args=list(inputs), print_results=False,
                                               print_detailed=False, output_as_string=False)
    ops = calflops_ops(model, *inputs)
    assert sum(op.flops for op in ops if op.seen) == flops
    assert all(op.flops > 0 for op in ops if not op.seen)  # what it misses is named, never empty


@pytest.mark.parametrize("key", ["USM-T/1", "ZigMa-T/2 text"])
def test_the_breakdowns_sum_to_the_count(key):
    model, inputs = tiny(key)
    ops = calflops_ops(model, *inputs)
    parts = breakdown(ops)
    total = sum(op.flops for op in ops if op.seen) / 1e9
    assert sum(parts["by_module"].values()) == pytest.approx(total, rel=1e-12)
    assert sum(parts["by_kind"].values()) == pytest.approx(total, rel=1e-12)
    assert sum(parts["unseen"].values()) == pytest.approx(sum(op.flops for op in ops if not op.seen) / 1e9)
    assert any("*" in module for module in parts["by_module"])  # blocks fold into one line each


def test_the_view_misses_the_at_operator_and_names_its_module():
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen, self.unseen = torch.nn.Linear(8, 4), torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.seen(x) @ self.unseen.weight.T

    ops = calflops_ops(Mixed(), torch.randn(2, 8))
    assert [(op.module, op.kind, op.flops, op.seen) for op in ops] == [
        ("seen", "linear", 2 * 2 * 8 * 4, True), ("unseen", "matmul", 2 * 2 * 4 * 3, False)]


# The modules each rule drops (or puts back) in a USM and a ZigMa: a model change that renames or
# moves them changes the rebuilt published GFLOPs, so it must fail here first.
PINNED = {
    "USM-T/1": {"added": {"mixer.ssm.dt_proj": 7}, "dropped": {"mixer.in_proj (linear)": 7,
                                                               "mixer.out_proj (linear)": 7}},
    "ZigMa-T/2": {"added": {}, "dropped": {"mixer.in_proj (linear)": 10, "mixer.conv1d (conv)": 10,
                                           "mixer (activation)": 10}},
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_rule_names_modules_that_exist_once_per_mixer(name):
    model, inputs = tiny(name)
    matched = matched_modules(RULES[family(name)], calflops_ops(model, *inputs))
    assert {part: {key: len(modules) for key, modules in found.items()} for part, found in matched.items()} \
        == PINNED[name]
    mixers = {name for name, module in model.named_modules() if name.endswith(".mixer")}
    assert all(len(modules) == len(mixers) for found in matched.values() for modules in found.values())
