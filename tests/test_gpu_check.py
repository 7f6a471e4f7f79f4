"""The prepared GPU check: refuses to run without CUDA, renders its report (the CUDA run itself is on a GPU)."""

import torch

from analysis.bench.gpu_check import main, markdown


def test_without_cuda_it_says_so(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "--quick runs the stages that can run on the CPU" in err


def test_every_stage_writes_its_record_and_a_failing_one_does_not_stop_the_rest(tmp_path, monkeypatch, capsys):
    """--quick on the CPU: each stage appends its line to gpu_check.jsonl and refreshes the JSON and
    Markdown as it ends; a stage that raises is recorded with its error and the next ones run; the
    thread count a stage changes is restored."""
    import json

    import analysis.bench.gpu_check as gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "cuda_tests", lambda timeout: {"summary": "stand-in", "returncode": 0})
    threads = torch.get_num_threads()

    def broken(*args, **kwargs):
        torch.set_num_threads(1)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(gpu_check, "scan_benchmarks", broken)
    monkeypatch.setattr(gpu_check, "training_profile", lambda *a, **k: [{"model": "USM-T/2", "batch": 2,
                                                                         "scan_backend": "numba",
                                                                         "train_steps_per_s": 3.0,
                                                                         "images_per_s": 6.0,
                                                                         "peak_memory_gib": None, "params_m": 0.5}])
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    assert [line["stage"] for line in lines] == [name for name, _, _ in gpu_check.STAGES]
    assert lines[2]["record"] == {"error": "RuntimeError: CUDA error: an illegal memory access was encountered"}
    assert torch.get_num_threads() == threads
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mini"] == {"skipped": "the mini scale's cost needs a GPU"}
    assert report["mini_trainer"]["status"] == "done"  # the smoke point through the real trainer
    text = (tmp_path / "gpu_check.md").read_text()
    assert "illegal memory access" in text and "| USM-T/2 | 2 | numba | 3.00 | 6.0 | - | 0.5 |" in text
    out = capsys.readouterr().out
    assert out.index("stages in order:") < out.index("[versions]") < out.index("[scan]")


def test_a_killed_check_leaves_the_records_of_its_finished_stages(tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-m", "analysis", "gpu-check", "--quick", "--out", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={
                                 "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                 "HOME": str(tmp_path)})
    records = tmp_path / "gpu_check.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (records.exists() and records.read_text().count("\n") >= 1):
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)  # mid-way: the cuda_tests stage runs pytest for several seconds
    child.wait()
    stages = [json.loads(line)["stage"] for line in records.read_text().splitlines()]
    assert stages and stages[0] == "versions" and len(stages) < 6
    assert json.loads((tmp_path / "gpu_check.json").read_text())["versions"]["torch"] == torch.__version__
    assert "Stages finished (seconds): versions" in (tmp_path / "gpu_check.md").read_text()


def test_report_names_the_device_and_every_measurement():
    report = {"device": "NVIDIA H100 80GB HBM3", "command": "python -m analysis gpu-check", "date": "2026-11-26",
              "versions": {"torch": "2.14.1", "triton": "3.8.0"}, "cuda_tests": {"summary": "12 passed"},
              "scan": [{"shape": {"B": 8, "D": 1536, "L": 1024, "N": 16}, "dtype": "bfloat16", "mode": "fwd+bwd",
                        "seconds": {"torch": 0.5, "triton": 0.01}, "speedup_of_triton_over_torch": 50.0},
                       {"shape": (2, 1536, 4096, 16), "dtype": "float32", "skipped": "time budget used"}],
              "training": [{"model": "USM-B/1", "batch": 8, "scan_backend": "triton", "train_steps_per_s": 2.0,
                            "images_per_s": 16.0, "peak_memory_gib": 20.5, "params_m": 169.9},
                           {"model": "DiT-B/2", "error": "RuntimeError: out of memory"}],
              "mini": {"model": "USM-S/1", "batch": 32, "train_steps_per_s": 10.0, "max_steps": 30000,
                       "hours_per_arm": 0.8333},
              "mini_trainer": {"data": "64 synthetic images", "latent": "SD-VAE architecture, random weights",
                               "mixed_precision": "bf16", "trainer_steps_per_s": 8.0, "steps_timed": 20,
                               "hours_per_arm": 1.0417, "latent_cache_seconds": 3.2}}
    text = markdown(report)
    assert "NVIDIA H100" in text
    assert "| (8, 1536, 1024, 16) | bfloat16 | fwd+bwd | 0.5000 | 0.0100 | - | - | 50.0x" in text
    assert "time budget used" in text and "| USM-B/1 | 8 | triton | 2.00 | 16.0 | 20.5 | 169.9 |" in text
    assert "out of memory" in text and "30,000 steps take 0.83 h per arm" in text
    assert "Through the trainer (64 synthetic images" in text
    assert "8.00 steps/s over 20 steps, so 1.04 h per arm" in text


def test_the_trainer_rate_runs_a_latent_points_real_trainer_on_synthetic_data(tmp_path):
    """The mini scale's path on the CPU, made small: its first point's settings with a tiny model,
    128 px synthetic images, a small VAE of the same family; the steps after the warm-up are timed
    through usm.training.train and the latent cache is built once, in the study's folder."""
    from analysis.bench.trainer_rate import first_point, measure, sd_vae_shaped
    from experiments.grids import GRIDS

    point = first_point(GRIDS["ablations"], "mini")
    settings = point.settings.set("model", "USM-T/2").set("resolution", 128)
    vae = sd_vae_shaped(tmp_path / "vae", block_out_channels=(8, 8, 8, 8), norm_num_groups=4, layers_per_block=1)
    record = measure(settings, tmp_path, steps=3, warmup=2, vae=str(vae), images=8, mixed_precision="no",
                     batch_size=4)
    assert record["status"] == "done" and record["steps_timed"] == 3 and record["trainer_steps_per_s"] > 0
    assert record["data"] == "8 synthetic images" and record["batch"] == 4
    assert list((tmp_path / "study" / "latents").glob("*.npy"))
