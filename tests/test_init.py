"""Each family starts where its released code starts: every parameter's initial distribution pinned.

A table per family maps every parameter (names with their indices folded to N) to one rule; a
parameter without a rule fails, so a new layer must say how it starts. Uniform rules are pinned by
their bound (no value beyond it, and the largest value close to it) and their standard deviation.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from usm.models.registry import build_model

D = 64  # the T sizes' width


def xavier(fan_in, fan_out):
    return ("uniform", math.sqrt(6 / (fan_in + fan_out)))


def torch_default(fan_in, scale=1.0):  # nn.Linear / nn.Conv: kaiming-uniform(a=sqrt(5)), bias alike
    return ("uniform", scale / math.sqrt(fan_in))


ZEROS, ONES, NORMAL_002 = ("const", 0.0), ("const", 1.0), ("normal", 0.02)
A_LOG, DT_BIAS = ("a_log", None), ("dt_bias", None)

SHARED = {  # every family's conditioning and SSM core (Mamba's init for A, D, dt)
    "conditioner.t_embedder.mlp.N.weight": NORMAL_002, "conditioner.t_embedder.mlp.N.bias": ZEROS,
    "mixer.ssm.A_log": A_LOG, "mixer.ssm.D": ONES, "mixer.ssm.dt_proj.bias": DT_BIAS,
    "mixer.ssm.dt_proj.weight": ("uniform", 4 ** -0.5),  # dt_rank = ceil(64 / 16) = 4
    "mixer.ssm.x_proj.weight": torch_default(2 * D),  # a plain parameter in the released codes: untouched
    "adaLN_modulation.N.weight": ZEROS, "adaLN_modulation.N.bias": ZEROS,
}

USM_RELEASED = {
    **SHARED, "pos_embed": ZEROS, "patch_embed.proj.weight": xavier(1, D), "patch_embed.proj.bias": ZEROS,
    "skip_scale": ONES, "mixer.in_proj.weight": xavier(D, 4 * D), "mixer.out_proj.weight": xavier(2 * D, D),
    "skip_proj.weight": xavier(2 * D, D), "skip_proj.bias": ZEROS,
    "mixer.conv2d.weight": torch_default(9), "mixer.conv2d.bias": torch_default(9),
    "mixer.out_norm.weight": ONES, "mixer.out_norm.bias": ZEROS,
    "down.weight": torch_default(4 * D), "down.bias": torch_default(4 * D),
    # ConvTranspose2d's fan_in is computed on its weight (in, out, k, k): out * k * k
    "up.weight": torch_default(4 * D), "up.bias": torch_default(4 * D),
    "final_layer.linear.weight": ZEROS, "final_layer.linear.bias": ZEROS,
}
USM_DEFAULT = {**USM_RELEASED, "mixer.in_proj.weight": torch_default(D), "mixer.out_proj.weight": torch_default(2 * D),
               "skip_proj.weight": torch_default(2 * D), "skip_proj.bias": torch_default(2 * D)}

ZIGMA_DEPTH = 10
ZIGMA_RELEASED = {
    **SHARED, "pos_embed": ZEROS, "patch_embed.proj.weight": xavier(1, D), "patch_embed.proj.bias": ZEROS,
    "norm.weight": ONES, "norm_f.weight": ONES, "mixer.in_proj.weight": torch_default(D),
    "mixer.conv1d.weight": torch_default(4), "mixer.conv1d.bias": torch_default(4),
    "mixer.out_proj.weight": torch_default(2 * D, scale=ZIGMA_DEPTH ** -0.5),  # GPT-2's residual rule
    "linear.weight": torch_default(D), "linear.bias": ZEROS,  # m_init leaves the final weight as drawn
}
ZIGMA_DEFAULT = {**ZIGMA_RELEASED, "mixer.out_proj.weight": torch_default(2 * D),
                 "linear.weight": ZEROS, "mixer.conv1d.bias": torch_default(4)}

DIT = {
    "pos_embed": ("sincos", None), "patch_embed.proj.weight": xavier(4, D), "patch_embed.proj.bias": ZEROS,
    "conditioner.t_embedder.mlp.N.weight": NORMAL_002, "conditioner.t_embedder.mlp.N.bias": ZEROS,
    "attn.qkv.weight": xavier(D, 3 * D), "attn.qkv.bias": ZEROS, "attn.proj.weight": xavier(D, D),
    "attn.proj.bias": ZEROS, "mlp.N.weight": ("xavier_any", None), "mlp.N.bias": ZEROS,
    "adaLN_modulation.N.weight": ZEROS, "adaLN_modulation.N.bias": ZEROS,
    "final_layer.linear.weight": ZEROS, "final_layer.linear.bias": ZEROS,
}


def rule_for(name: str, table: dict):
    folded = re.sub(r"\.\d+(?=\.|$)", ".N", name)
    matches = [key for key in table if folded == key or folded.endswith("." + key)]
    assert matches, f"{name}: no init rule for it (add one to the family's table)"
    return table[max(matches, key=len)]


def check(name: str, p: torch.Tensor, rule) -> None:
    kind, value = rule
    w = p.detach().double().flatten()
    n = w.numel()
    if kind == "const":
        assert torch.all(w == value), f"{name}: expected all {value}"
    elif kind == "normal":
        assert abs(w.std().item() / value - 1) < 0.05 + 4 / math.sqrt(2 * n), f"{name}: std {w.std():.4g} != {value}"
    elif kind == "uniform":
        top = w.abs().max().item()
        assert top <= value * (1 + 1e-6), f"{name}: |w| reaches {top:.4g} beyond the bound {value:.4g}"
        if n >= 256:  # the largest of n uniform draws lies within about bound / n of the bound
            assert top >= value * (1 - 10 / n), f"{name}: |w| stops at {top:.4g}, the bound is {value:.4g}"
        expected = value / math.sqrt(3)
        assert abs(w.std().item() / expected - 1) < 0.04 + 4 / math.sqrt(2 * n), \
            f"{name}: std {w.std():.4g}, expected {expected:.4g}"
    elif kind == "xavier_any":  # fan sizes read off the weight
        fan_out, fan_in = p.shape
        check(name, p, xavier(fan_in, fan_out))
    elif kind == "a_log":
        assert torch.allclose(p, torch.log(torch.arange(1, p.shape[1] + 1.0)).expand_as(p)), name
    elif kind == "dt_bias":  # softplus(bias) log-uniform in [1e-3, 1e-1]
        dt = F.softplus(p.detach())
        assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001, name
        assert dt.log().std() > 0.5 * (math.log(100) / math.sqrt(12)), f"{name}: not spread over the range"
    elif kind == "sincos":
        assert not p.requires_grad and p.abs().max() <= 1 and p.abs().max() > 0.99, name
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("name, args, table", [
    ("USM-T/1", {}, USM_RELEASED),
    ("USM-T/1", {"init": "default"}, USM_DEFAULT),
    ("ZigMa-T/1", {}, ZIGMA_RELEASED),
    ("ZigMa-T/1", {"init": "default"}, ZIGMA_DEFAULT),
    ("DiT-T/2", {}, DIT),
])
def test_every_parameter_starts_as_its_family_rule_says(name, args, table):
    torch.manual_seed(0)
    model = build_model(name, input_size=16, in_channels=1, **args)
    for pname, p in model.named_parameters():
        check(pname, p, rule_for(pname, table))


def test_the_rules_tell_xavier_from_the_default_they_replace():
    """The USM in_proj rules are 9% apart in std: the check must tell one from the other."""
    torch.manual_seed(0)
    released = build_model("USM-T/1", input_size=16, in_channels=1)
    default = build_model("USM-T/1", input_size=16, in_channels=1, init="default")
    key = "middle.mixer.in_proj.weight"
    with pytest.raises(AssertionError):
        check(key, dict(released.named_parameters())[key], USM_DEFAULT["mixer.in_proj.weight"])
    with pytest.raises(AssertionError):
        check(key, dict(default.named_parameters())[key], USM_RELEASED["mixer.in_proj.weight"])


def test_an_unknown_init_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="released"):
        build_model("USM-T/1", init="xavier")
    with pytest.raises(ValueError, match="released"):
        build_model("ZigMa-T/1", init="mamba")
