"""Reference checkpoints: key/shape manifest, forward parity with a reference-layout twin, errors, CLI."""

import json
import math
from pathlib import Path

import pytest
import torch

from tests.reference_layout_usm import ReferenceLayoutUSM
from usm.models import USM
from usm.models.convert import (
    ReferenceCheckpointError,
    infer_config,
    load_reference_state_dict,
    main,
    to_reference_state_dict,
)

# Keys and shapes of the real reference implementation's state dict (USM-S/1 and USM-B/1), recorded from it.
MANIFEST = Path(__file__).parent / "data" / "usm_reference_state_dict.json"
SIZES = {"USM-S/1": (384, 13), "USM-B/1": (768, 25)}


def manifest():
    return json.loads(MANIFEST.read_text())


@pytest.mark.parametrize("name", sorted(SIZES))
def test_manifest_round_trip(name):
    """Our model exports exactly the reference's keys and shapes, and loads them back strictly."""
    entry = manifest()[name]
    hidden, depth = SIZES[name]
    with torch.device("meta"):
        model = USM(input_size=entry["input_size"], patch_size=1, in_channels=entry["in_channels"],
                    hidden_size=hidden, depth=depth, learn_sigma=entry["learn_sigma"], **entry["kwargs"])
    exported = to_reference_state_dict(model)
    assert {k: list(v.shape) for k, v in exported.items()} == entry["state_dict"]
    assert sum(math.prod(s) for s in entry["state_dict"].values()) == entry["num_parameters"]
    fake = {k: torch.empty(s, device="meta") for k, s in entry["state_dict"].items()}
    report = load_reference_state_dict(model, fake)
    assert report.loaded == len(model.state_dict())
    assert len(report.dropped) == 2 * depth + 2  # ln_1 weight+bias per block, y_embedder weight+bias
    unused = sum(math.prod(entry["state_dict"][k]) for k in report.dropped)
    assert unused + sum(p.numel() for p in model.parameters()) == entry["num_parameters"]


def test_usm_b1_parameter_count():
    with torch.device("meta"):
        model = USM(input_size=32, patch_size=1, in_channels=4, hidden_size=768, depth=25)
    # 170,571,268 in the reference, 628,992 of which are its unused ln_1 and y_embedder.
    assert sum(p.numel() for p in model.parameters()) == 169_942_276


def twin_and_model(depth=7, hidden=32, input_size=8, seed=0):
    torch.manual_seed(seed)
    ref = ReferenceLayoutUSM(input_size=input_size, hidden_size=hidden, depth=depth)
    with torch.no_grad():  # non-zero everything, so no part of the network can hide behind a zero init
        for name, p in ref.named_parameters():
            if "A_logs" not in name and "dt_projs_bias" not in name:
                p.copy_(torch.randn_like(p) * (0.2 if p.dim() > 1 else 0.1) + (1.0 if "skip_scale" in name else 0))
    model = USM(input_size=input_size, patch_size=1, in_channels=4, hidden_size=hidden, depth=depth,
                scan_backend="torch")
    return ref.eval(), model.eval()


@pytest.mark.parametrize("depth", [7, 13])
def test_forward_matches_reference_layout(depth):
    ref, model = twin_and_model(depth=depth)
    report = load_reference_state_dict(model, ref.state_dict())
    assert "y_embedder.weight" in report.dropped
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.13, 0.87])
    with torch.no_grad():
        expected, ours = ref(x, t * 1000), model(x, t)
    assert expected.abs().mean() > 1e-2  # a real signal, not zeros on both sides
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_round_trip_preserves_weights():
    _, model = twin_and_model()
    copy = USM(**{k: v for k, v in model.config.items()})
    load_reference_state_dict(copy, to_reference_state_dict(model))
    for (key, a), (_, b) in zip(model.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), key


def test_wrong_checkpoints_raise_naming_keys():
    ref, model = twin_and_model()
    sd = ref.state_dict()
    missing = {k: v for k, v in sd.items() if k != "enc_blocks.0.attn.self_attention.Ds"}
    with pytest.raises(ReferenceCheckpointError, match=r"missing \(1\): enc_blocks.0.attn.self_attention.Ds"):
        load_reference_state_dict(model, missing)
    with pytest.raises(ReferenceCheckpointError, match=r"unexpected \(1\): extra.weight"):
        load_reference_state_dict(model, {**sd, "extra.weight": torch.zeros(1)})
    bad = dict(sd, **{"final_layer.linear.weight": torch.zeros(8, 32)})
    expected = r"final_layer.linear.weight: checkpoint \(8, 32\), model expects \(4, 32\)"
    with pytest.raises(ReferenceCheckpointError, match=expected):
        load_reference_state_dict(model, bad)
    deeper = USM(input_size=8, patch_size=1, in_channels=4, hidden_size=32, depth=13)
    with pytest.raises(ReferenceCheckpointError, match="missing"):
        load_reference_state_dict(deeper, sd)


def test_infer_config_and_cli(tmp_path):
    ref, model = twin_and_model()
    sd = ref.state_dict()
    config = infer_config(sd)
    assert (config["hidden_size"], config["depth"], config["input_size"], config["patch_size"]) == (32, 7, 8, 1)
    assert config["skip_conn"] and config["use_convtranspose"] and config["z_gate"]
    src, dst = tmp_path / "ref.pt", tmp_path / "ours.pt"
    torch.save({"model": sd, "ema": sd}, src)
    main([str(src), str(dst)])
    saved = torch.load(dst, weights_only=True)
    rebuilt = USM(**saved["config"])
    rebuilt.load_state_dict(saved["model"])
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x, t), ref(x, t * 1000), rtol=1e-4, atol=1e-4)
    with pytest.raises(SystemExit, match="'nonsense' is not a USM argument"):
        main([str(src), str(dst), "--set", "nonsense=1"])
