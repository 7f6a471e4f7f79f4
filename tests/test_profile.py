"""Activation memory (meta == real; checkpointing), throughput, and the profile command end to end."""

import json
import re

import pytest
import torch

from analysis.__main__ import main as analysis_main
from analysis.metrics.memory import activation_bytes
from analysis.metrics.profile import model_activation_bytes
from usm.models.registry import MODELS, build_model
from usm.rectified_flow import training_loss


@pytest.mark.parametrize("name", ["USM-T/2", "ZigMa-T/2"])
def test_meta_activation_bytes_equal_real_ones_for_mamba_models(name):
    torch.manual_seed(0)
    model = build_model(name, scan_backend="torch")  # the backend activation memory is counted with
    x = torch.randn(2, 4, 32, 32)
    real = activation_bytes(lambda: training_loss(model, x), model)
    assert real == model_activation_bytes(name, 32, 2, checkpoint=False)  # meta
    assert real == model_activation_bytes(name, 32, 2, checkpoint=False, device="cpu")
    assert model_activation_bytes(name, 32, 4, checkpoint=False) == pytest.approx(2 * real, rel=0.05)


def test_meta_bounds_attention_memory_from_above():
    """On meta, SDPA takes the math kernel (it saves the attention matrix); real kernels save less."""
    real = model_activation_bytes("DiT-T/2", 32, 2, checkpoint=False, device="cpu")
    meta = model_activation_bytes("DiT-T/2", 32, 2, checkpoint=False)
    layers = MODELS["DiT-T/2"].defaults["depth"]
    attention_matrices = layers * 2 * 4 * 256 * 256 * 4  # layers x batch x heads x L x L x float32
    # (the real kernel saves a small log-sum-exp per query instead: hence approx)
    assert meta - real == pytest.approx(attention_matrices, rel=0.01)


@pytest.mark.parametrize("name", ["USM-T/2", "ZigMa-T/2", "DiT-T/2"])
def test_checkpointing_cuts_activation_memory(name):
    plain, ckpt = (model_activation_bytes(name, 32, 2, checkpoint=c, device="cpu") for c in (False, True))
    assert ckpt < 0.5 * plain


def test_parameters_are_not_activations():
    model = torch.nn.Linear(1000, 1000)
    x = torch.randn(1, 1000)
    assert activation_bytes(lambda: model(x).sum(), model) == 1000 * 4  # the input only, not the weight


@pytest.mark.slow
def test_profile_command_writes_records_table_and_plot(tmp_path, capsys):
    out = tmp_path / "profile"
    assert analysis_main(["profile", "--models", "USM-T/2", "ZigMa-T/2", "--image-size", "128", "256",
                          "--throughput-max-size", "128", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "USM / ZigMa at 128px: GFLOPs" in printed and "train time/step" in printed
    record = json.loads((out / "USM-T_2_128.json").read_text())
    assert record["train_steps_per_s"] > 0 and record["sample_images_per_s"] > 0
    assert {"device_name", "scan_backend", "batch", "dtype"} <= record.keys()
    assert record["activation_method"] == "measured"
    assert "train_steps_per_s" not in json.loads((out / "USM-T_2_256.json").read_text())
    assert (out / "scaling.png").stat().st_size > 1000 and (out / "scaling.pdf").exists()
    assert (out / "table.md").read_text().startswith("| model | image |")


@pytest.mark.parametrize("name", ["USM-T/1", "ZigMa-T/2", "DiT-T/2", "UNet-T"])
def test_a_points_activation_cost_is_counted_for_every_family(name):
    """A study point counts its model's activation memory from its recorded config; a family without
    a scan or checkpointing (the diffusers U-Net) takes neither argument, and the count still runs."""
    from analysis.metrics.run_cost import activation_mib
    from usm.models.registry import build_model

    config = dict(build_model(name, input_size=16, in_channels=1).config)
    small, large = activation_mib(name, config, 2), activation_mib(name, config, 4)
    assert small > 0 and large == pytest.approx(2 * small, rel=0.1)


@pytest.mark.parametrize("tool", ["bench-scan", "step-profile", "trainer-rate", "gpu-check", "doc-blocks"])
def test_every_tool_is_called_through_python_m_analysis(tool, capsys):
    with pytest.raises(SystemExit) as exit_:
        analysis_main([tool, "--help"])
    assert exit_.value.code == 0 and f"usage: python -m analysis {tool}" in capsys.readouterr().out


def test_the_listing_names_every_tool(capsys):
    with pytest.raises(SystemExit):
        analysis_main(["--help"])
    listing = capsys.readouterr().out  # the description names them too: look for the sub-command rows
    rows = set(re.findall(r"^ {4}([a-z-]+) ", listing, flags=re.M))
    assert {"bench-scan", "step-profile", "trainer-rate", "gpu-check", "doc-blocks"} <= rows, rows


def test_doc_blocks_through_the_dispatcher_reports_its_result():
    assert analysis_main(["doc-blocks", "--check"]) == 0  # the checked-in blocks equal their records


def test_the_model_table_record_is_the_commands_output(capsys):
    """The README's parameter table (results/reference/models/parameters.md) is what the command prints now."""
    from pathlib import Path

    assert analysis_main(["models"]) == 0
    record = Path(__file__).resolve().parents[1] / "results/reference/models/parameters.md"
    assert capsys.readouterr().out.strip() == record.read_text().strip()


def test_the_scales_record_is_the_commands_output_and_reads_the_grid(capsys):
    """docs/ablations.md's scales table (results/reference/ablations/scales.md) is what the command
    prints now, and its cells come from the grid's Scale and the recipe model's structure."""
    from pathlib import Path

    from experiments.grids import GRIDS

    for grid in ("paper", "ablations"):  # docs/comparison.md shows the paper grid's
        assert analysis_main(["scales", "--grid", grid]) == 0
        printed = capsys.readouterr().out
        record = Path(__file__).resolve().parents[1] / f"results/reference/{grid}/scales.md"
        assert printed.strip() == record.read_text().strip()
    smoke = next(line for line in printed.splitlines() if line.startswith("| `smoke` |"))
    steps = GRIDS["ablations"].scales["smoke"].settings.train["max_steps"]
    assert f"{steps:,} steps" in smoke and "2x2x64, 1x the target" in smoke and "expand 1, 8 states" in smoke
    paper = next(line for line in printed.splitlines() if line.startswith("| `paper` |"))
    assert "4x4x768, 3x the target" in paper and "32x32x4" in paper
    from analysis.report.scale_table import render

    for grid in GRIDS.values():  # every grid's scales render, profile-only ones included
        assert render(grid).count("\n| `") == len(grid.scales)
