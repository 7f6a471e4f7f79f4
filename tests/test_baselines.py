"""ZigMa and DiT on the shared core: every registered name, all conditioning modes, counts, FLOPs."""

import pytest
import torch

from baselines.dit import PUBLISHED_GFLOPS, DiT
from baselines.zigma import ZigMa
from usm.guidance import guided
from usm.models.registry import MODELS, build_model
from usm.scan_orders import ZIGMA_PATHS

TINY_NAMES = ["USM-T/2", "ZigMa-T/2", "DiT-T/2"]


def perturb(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_name_builds(name):
    with torch.device("meta"):
        model = build_model(name, input_size=32, in_channels=4, num_classes=0)
        out = model(torch.empty(1, 4, 32, 32), torch.empty(1)) if name.endswith(("T/2", "/8")) else None
    assert sum(p.numel() for p in model.parameters()) > 0
    assert out is None or out.shape == (1, 4, 32, 32)
    assert MODELS[name].description


@pytest.mark.parametrize("name", TINY_NAMES)
@pytest.mark.parametrize("mode", ["none", "class", "text"])
def test_tiny_models_train_in_every_conditioning_mode(name, mode):
    torch.manual_seed(0)
    kwargs = {"none": {}, "class": dict(num_classes=5), "text": dict(has_text=True, d_context=12)}[mode]
    model = perturb(build_model(name, in_channels=3, **kwargs))
    x, t = torch.randn(2, 3, 32, 32), torch.rand(2)
    cond = {"none": None, "class": torch.tensor([1, 4]), "text": torch.randn(2, 6, 12)}[mode]
    out = model(x, t, cond)
    assert out.shape == x.shape
    out.square().mean().backward()
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # The null class row is only reached through label dropout.
    assert not [n for n in frozen if "embedding_table" not in n], frozen


@pytest.mark.parametrize("name, args", [("USM-T/2", {}), ("DiT-T/2", {}), ("ZigMa-T/2", {"init": "default"})])
def test_zero_initialised_output_layers_give_zero_output(name, args):
    model = build_model(name, in_channels=3, num_classes=3, **args)
    assert torch.count_nonzero(model(torch.randn(2, 3, 32, 32), torch.rand(2), torch.tensor([0, 2]))) == 0


def test_released_zigma_starts_from_a_small_nonzero_output():
    """ZigMa's m_init does not zero its final Linear (tests/test_init.py pins its weights)."""
    out = build_model("ZigMa-T/2", in_channels=3)(torch.randn(2, 3, 32, 32), torch.rand(2))
    assert torch.count_nonzero(out) == out.numel() and out.abs().mean() < 1


@pytest.mark.parametrize("name", TINY_NAMES)
def test_guidance_scale_one_is_the_conditional_output(name):
    torch.manual_seed(0)
    model = perturb(build_model(name, in_channels=3, num_classes=4)).eval()
    x, t, y = torch.randn(2, 3, 32, 32), torch.rand(2), torch.tensor([0, 3])
    torch.testing.assert_close(guided(model, x, t, y, 1.0), model(x, t, y))
    v_cond, v_null = model(x, t, y), model(x, t, torch.full_like(y, 4))
    torch.testing.assert_close(guided(model, x, t, y, 3.0), v_null + 3.0 * (v_cond - v_null), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided(model, x, t, y, 0.0), v_null, rtol=1e-4, atol=1e-5)


def test_zigma_layers_follow_zigzag_paths_and_inverse_restores_order():
    model = build_model("ZigMa-T/2", depth=10)
    assert [b.path for b in model.blocks] == [ZIGMA_PATHS[i % 8] for i in range(10)]
    tokens = torch.randn(2, 256, 8)
    for block in model.blocks:
        torch.testing.assert_close(tokens[:, block.order][:, block.inverse], tokens)


def test_zigma_scan_order_matters():
    """Each layer really scans its own path: swapping two paths changes the output."""
    torch.manual_seed(0)
    model = perturb(build_model("ZigMa-T/2", in_channels=3)).eval()
    x, t = torch.randn(1, 3, 32, 32), torch.rand(1)
    before = model(x, t)
    b0, b1 = model.blocks[0], model.blocks[1]
    b0.order, b1.order = b1.order.clone(), b0.order.clone()
    b0.inverse, b1.inverse = b1.inverse.clone(), b0.inverse.clone()
    assert not torch.allclose(model(x, t), before)


def test_zigma_positional_embedding_options():
    assert build_model("ZigMa-T/2").pos_embed.requires_grad
    assert not build_model("ZigMa-T/2", pos_embed="sincos").pos_embed.requires_grad
    assert build_model("ZigMa-T/2", pos_embed="none").pos_embed is None
    with pytest.raises(ValueError, match="pos_embed must be"):
        build_model("ZigMa-T/2", pos_embed="rope")


def param_count(name, **kwargs):
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(name, **kwargs).parameters())


def test_parameter_counts():
    assert param_count("ZigMa-B/1") == 134_624_260  # the ZigMa paper: about 134.6 M on 32x32x4
    assert param_count("DiT-XL/2", num_classes=1000, learn_sigma=True) == 675_129_632  # DiT's published count
    assert param_count("DiT-B/2", num_classes=1000, learn_sigma=True) == 130_512_416  # about 130.5 M


def test_dit_learn_sigma_outputs_twice_the_channels():
    model = build_model("DiT-T/2", in_channels=3, learn_sigma=True)
    assert model(torch.randn(1, 3, 32, 32), torch.rand(1)).shape == (1, 6, 32, 32)


DIT_GFLOPS = PUBLISHED_GFLOPS  # DiT's published forward GFLOPs at 256x256


@pytest.mark.parametrize("name", sorted(DIT_GFLOPS))
def test_dit_flop_formula_reproduces_published_gflops(name):
    with torch.device("meta"):
        model = build_model(name, num_classes=1000, learn_sigma=True)
    assert model.flop_formula()["total"] / 1e9 == pytest.approx(DIT_GFLOPS[name], rel=5e-3)


def test_usm_flop_formula_matches_fvcore_on_the_reference():
    """fvcore on the reference USM-B/1 (scan counted as 0): 48.47 G; linear 44.50 + einsum 2.12."""
    with torch.device("meta"):
        flops = build_model("USM-B/1").flop_formula()
    assert (flops["total"] - flops["scan"]) / 1e9 == pytest.approx(48.47, rel=5e-3)
    assert flops["linear"] / 1e9 == pytest.approx(44.50 + 2.12, rel=5e-3)  # x_proj/dt_proj are Linear here
    assert flops["conv"] / 1e9 == pytest.approx(1.74, rel=5e-3)
    assert flops["norm"] / 1e9 == pytest.approx(0.12, rel=5e-2)
    # 9 * L * E * N + L * E per block, E = 1536, N = 16, over 10,768 token-blocks.
    assert flops["scan"] == 10_768 * (9 * 1536 * 16 + 1536)


def test_flop_formulas_scale_with_batch_and_text():
    for name in TINY_NAMES:
        model = build_model(name)
        one, two = model.flop_formula(1)["total"], model.flop_formula(2)["total"]
        assert two == 2 * one
    text = build_model("USM-T/2", has_text=True, d_context=12).flop_formula()
    assert text["attention"] > 0 and text["total"] > build_model("USM-T/2").flop_formula()["total"]


def test_baselines_refuse_bad_configurations():
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        DiT(input_size=30, patch_size=4)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ZigMa(input_size=30, patch_size=4)
    with pytest.raises(ValueError, match="hidden size 36 is not divisible by 8 heads"):
        DiT(input_size=8, hidden_size=36, num_heads=8, depth=1)


@pytest.mark.parametrize("backend", ["reference", "torch", "numba"])
def test_zigma_mixer_token_major_matches_its_channel_major_twin(backend):
    """The mixer keeps tokens (B, L, E) around the scan; mamba's (B, E, L) form gives the same output
    and the same gradients for every parameter."""
    from baselines.zigma import MambaMixer

    torch.manual_seed(0)
    mixer = MambaMixer(16, d_state=4, scan_backend=backend)
    h = torch.randn(2, 12, 16, requires_grad=True)
    grads = []
    for forward in (mixer.forward, mixer.channel_major):
        mixer.zero_grad()
        h.grad = None
        out = forward(h)
        out.square().sum().backward()
        grads.append((out.detach(), h.grad.clone(), [p.grad.clone() for p in mixer.parameters()]))
    (a, ha, pa), (b, hb, pb) = grads
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ha, hb, atol=1e-5, rtol=1e-4)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_causal_conv_sees_only_the_past_and_matches_a_padded_conv():
    from usm.layers.causal_conv import causal_conv1d_silu

    conv = torch.nn.Conv1d(6, 6, kernel_size=4, groups=6, padding=3)
    x = torch.randn(2, 6, 9)
    expected = torch.nn.functional.silu(conv(x)[..., :9])
    torch.testing.assert_close(causal_conv1d_silu(x, conv.weight.squeeze(1), conv.bias), expected)
    later = x.clone()
    later[..., 5:] += 1.0  # changing positions >= 5 leaves outputs 0..4 unchanged
    out = causal_conv1d_silu(later, conv.weight.squeeze(1), conv.bias)
    torch.testing.assert_close(out[..., :5], expected[..., :5])
    assert not torch.allclose(out[..., 5:], expected[..., 5:])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_causal_conv_cuda_kernel_matches_torch():
    from usm.layers.causal_conv import causal_conv1d_silu, cuda_kernel

    if cuda_kernel() is None:
        pytest.skip("causal-conv1d is not installed (the cuda extra)")
    x, w, b = torch.randn(2, 64, 129, device="cuda"), torch.randn(64, 4, device="cuda"), torch.randn(64, device="cuda")
    fused, plain = causal_conv1d_silu(x, w, b, backend="cuda"), causal_conv1d_silu(x, w, b, backend="torch")
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_without_registered_families_the_registry_says_to_install(monkeypatch):
    """A checkout that was never pip-installed has no entry points: one message saying what to do."""
    import usm.models.registry as registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(RuntimeError, match="pip install -e ."):
        registry._all_models()
