"""The prepared GPU check: refuses to run without CUDA, renders its report (the CUDA run itself is on a GPU)."""

import torch

from analysis.gpu_check import main, markdown


def test_without_cuda_it_says_so(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", "unused"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_report_names_the_device_and_every_measurement():
    report = {"device": "NVIDIA H100 80GB HBM3", "command": "python -m analysis.gpu_check", "date": "2026-11-26",
              "versions": {"torch": "2.14.1", "triton": "3.8.0"}, "cuda_tests": {"summary": "12 passed"},
              "scan": [{"shape": {"B": 8, "D": 1536, "L": 1024, "N": 16}, "dtype": "bfloat16", "mode": "fwd+bwd",
                        "seconds": {"torch": 0.5, "triton": 0.01}, "speedup_of_triton_over_torch": 50.0},
                       {"shape": (2, 1536, 4096, 16), "dtype": "float32", "skipped": "time budget used"}],
              "training": [{"model": "USM-B/1", "batch": 8, "scan_backend": "triton", "train_steps_per_s": 2.0,
                            "images_per_s": 16.0, "peak_memory_gib": 20.5, "params_m": 169.9},
                           {"model": "DiT-B/2", "error": "RuntimeError: out of memory"}],
              "mini": {"model": "USM-S/1", "batch": 32, "train_steps_per_s": 10.0, "max_steps": 30000,
                       "hours_per_arm": 0.8333}}
    text = markdown(report)
    assert "NVIDIA H100" in text and "| (8, 1536, 1024, 16) | bfloat16 | fwd+bwd | 0.5000 | 0.0100 | - | 50.0x" in text
    assert "time budget used" in text and "| USM-B/1 | 8 | triton | 2.00 | 16.0 | 20.5 | 169.9 |" in text
    assert "out of memory" in text and "30,000 steps take 0.83 h per arm" in text
