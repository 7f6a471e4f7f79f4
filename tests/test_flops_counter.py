"""The FLOP counter against outside anchors (DiT's paper, fvcore on the reference USM) and the formulas."""

import json

import pytest
import torch

from analysis.__main__ import main as analysis_main
from analysis.metrics.flops import count_flops, count_registered
from baselines.dit import PUBLISHED_GFLOPS
from usm.models.registry import build_model

DIT_GFLOPS = PUBLISHED_GFLOPS  # DiT's published forward GFLOPs at 256x256, ImageNet setting


@pytest.mark.parametrize("name", sorted(DIT_GFLOPS))
@pytest.mark.slow
def test_counter_reproduces_dit_published_gflops(name):
    report = count_registered(name, 256, num_classes=1000, learn_sigma=True)
    assert report.gflops == pytest.approx(DIT_GFLOPS[name], rel=5e-3)
    assert report.uncounted == {} and report.gflops_scan == 0


def test_counter_on_usm_b1_matches_fvcore_on_the_reference():
    report = count_registered("USM-B/1", 256)
    assert report.gflops - report.gflops_scan == pytest.approx(48.47, rel=5e-3)  # scan counted as 0 there
    assert report.gflops_scan == pytest.approx(10_768 * (9 * 1536 * 16 + 1536) / 1e9)
    assert report.uncounted == {}


@pytest.mark.parametrize("name, model_args", [  # the paper's B sizes are slow (about 3 s each); T sizes test the same
    *(pytest.param(name, {}, marks=pytest.mark.slow) for name in ("USM-B/1", "ZigMa-B/1", "DiT-B/2")),
    ("USM-T/2", dict(use_convtranspose=False, skip_conn=False, z_gate=False)),
    ("USM-T/2", dict(use_convtranspose=False, upsample_kernel=5, upsample_groups=4)),
    ("USM-T/2", dict(has_text=True, d_context=32)), ("ZigMa-T/2", dict(num_classes=10, has_text=False)),
    ("ZigMa-T/2", dict(has_text=True, d_context=16)), ("DiT-T/2", dict(has_text=True, d_context=16)),
])
def test_counter_equals_each_models_formula(name, model_args):
    report = count_registered(name, **model_args)
    with torch.device("meta"):
        formula = build_model(name, **model_args).flop_formula()
    assert report.gflops * 1e9 == pytest.approx(formula["total"], rel=5e-3)
    assert report.gflops_scan * 1e9 == pytest.approx(formula.get("scan", 0), rel=5e-3)
    assert report.uncounted == {}


def test_unknown_operators_are_reported_not_hidden():
    class Odd(torch.nn.Module):
        def forward(self, x, t):
            return torch.cumsum(x, dim=-1) + torch.linalg.matrix_exp(x[..., :4, :4]).sum()

    report = count_flops(Odd(), torch.randn(1, 3, 8, 8), torch.rand(1))
    assert "aten::cumsum" in report.uncounted and "aten::linalg_matrix_exp" in report.uncounted


def test_flops_cli_json(capsys):
    assert analysis_main(["flops", "--model", "USM-T/2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"model", "gflops", "gflops_scan", "params", "by_operator", "uncounted"} <= out.keys()
    assert out["model"] == "USM-T/2" and out["by_operator"]["scan"] == pytest.approx(out["gflops_scan"])
