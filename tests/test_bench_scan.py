"""The scan benchmark runs end to end at a small shape and reports ratios for what it timed."""

import pytest

from analysis.bench.bench_scan import main


def test_bench_scan_small_shape(capsys):
    result = main(["--shape", "1", "16", "32", "4", "--repeats", "1", "--json"])
    assert set(result["seconds"]) >= {"reference", "torch"}
    assert all(s > 0 for s in result["seconds"].values())
    assert "reference/torch" in result["speedup_of_torch_over"]
    assert '"seconds"' in capsys.readouterr().out


def test_backends_take_turns_round_by_round():
    """Load on a shared machine comes in bursts: each round times every backend once, so a burst
    cannot fall on one backend's repeats alone (bench_scan and step_profile alike)."""
    import torch

    from analysis.bench.bench_scan import time_interleaved
    from analysis.bench.step_profile import steps_per_second

    calls = []
    x = torch.zeros(2, requires_grad=True)
    runs = {name: (lambda name=name, **kw: (calls.append(name), kw["x"] * 2)[1]) for name in ("a", "b")}
    seconds = time_interleaved(runs, {"x": x}, repeats=3, device=torch.device("cpu"))
    assert calls == ["a", "b"] * 4  # one warm-up each, then three rounds
    assert set(seconds) == {"a", "b"} and all(s > 0 for s in seconds.values())

    calls.clear()
    rates = steps_per_second({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a", "b"] * 2  # three warm-up steps each, then turns
    assert set(rates) == {"a", "b"}


def test_step_profile_measures_the_machine_limit_and_counts_the_step_by_the_formula():
    from analysis.bench.step_profile import matmul_gflops, step_gflop
    from usm.models.registry import build_model

    assert matmul_gflops(size=256, repeats=2) > 0.1  # any CPU multiplies 256x256 matrices faster than that
    forward = build_model("USM-T/1", input_size=16, in_channels=1).flop_formula()["total"]  # multiply-adds
    assert step_gflop("USM-T/1", 16, 1, 8) == pytest.approx(forward * 2 * 3 * 8 / 1e9, rel=1e-6)
    lean = build_model("USM-T/1", input_size=16, in_channels=1, expand=1, d_state=8).flop_formula()["total"]
    assert step_gflop("USM-T/1", 16, 1, 8, expand=1, d_state=8) == pytest.approx(lean * 2 * 3 * 8 / 1e9, rel=1e-6)
    assert lean < 0.6 * forward  # the smoke study's lean mixer halves the step's work


def test_step_profile_counts_every_operator_of_a_step_once():
    import torch

    from analysis.bench.step_profile import aten_operators

    x = torch.ones(3, requires_grad=True)
    assert aten_operators(lambda: (x * 2).sum().backward()) == aten_operators(lambda: (x * 2).sum().backward())
    assert aten_operators(lambda: (x * 2).sum()) == 2  # mul, sum
    assert aten_operators(lambda: (x * 2 + 1).sum()) == 3


def test_the_targets_are_one_table_that_picks_the_shape_and_mode_specific_rule():
    """The same names as the checked-in records (results/reference/bench/scan_cpu*.json)."""
    import json
    from pathlib import Path

    from analysis.bench.bench_scan import targets_for

    fast = {"reference": 3.5, "torch": 1.0, "numba": 0.3, "numba-tokens": 0.19, "mambapy": 2.0}
    assert targets_for(fast, (2, 1536, 1024, 16), "fwd+bwd") == {
        "reference/torch >= 4": False, "mambapy/torch > 1": True, "torch/numba-tokens >= 4": True,
        "torch/numba >= 3": True}
    assert targets_for(fast, (8, 128, 256, 16), "fwd+bwd") == {  # the smoke shape's own rules
        "reference/torch >= 3": True, "mambapy/torch > 1": True, "torch/numba-tokens >= 5": True,
        "torch/numba >= 3": True}
    gpu = {"torch": 1.0, "triton": 0.04, "mamba_ssm": 0.02}
    assert targets_for(gpu, (2, 1536, 1024, 16), "fwd") == {"torch/triton >= 20": True,
                                                              "triton/mamba_ssm <= 1.5": False}
    assert targets_for(gpu, (2, 1536, 1024, 16), "fwd+bwd")["triton/mamba_ssm <= 2.5"] is True
    root = Path(__file__).resolve().parents[1] / "results" / "reference"
    for name in ("bench/scan_cpu.json", "bench/scan_cpu_smoke_shape.json", "bench/scan_cpu_1thread.json"):
        record = json.loads((root / name).read_text())
        speed = {k: v for k, v in record["targets"].items() if "memory" not in k}
        assert targets_for(record["seconds"], tuple(record["shape"].values()), record["mode"]) == speed, name


def test_the_docs_benchmark_table_is_the_records_table(capsys):
    """docs/scan.md's table (results/reference/bench/scan_cpu_table.md) is what --table prints from
    the three checked-in records."""
    from pathlib import Path

    reference = Path(__file__).resolve().parents[1] / "results/reference"
    records = [str(reference / f"bench/scan_cpu{tail}.json") for tail in ("", "_1thread", "_smoke_shape")]
    assert main(["--table", *records]) == {}
    printed = capsys.readouterr().out.strip()
    assert printed == (reference / "bench/scan_cpu_table.md").read_text().strip()
    for entry in ("numba's (B, D, L) entry", "numba's token-major entry"):  # both layouts, side by side
        assert f"| speed-up of {entry} over torch |" in printed


def test_the_targets_record_is_the_commands_output(capsys):
    """docs/scan.md shows the targets from results/reference/bench/scan_targets.md: the TARGETS table itself."""
    from pathlib import Path

    from analysis.bench.bench_scan import TARGETS, main

    main(["--targets"])
    printed = capsys.readouterr().out
    assert printed == (Path(__file__).parents[1] / "results/reference/bench/scan_targets.md").read_text()
    assert all(f"`{target.name}`" in printed for target in TARGETS)
