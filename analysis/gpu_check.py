"""The prepared GPU check: CUDA parity tests, scan benchmarks, a short training profile (one command).

    python -m analysis gpu-check                    # within --budget seconds (480); writes results/gpu/
    python -m analysis gpu-check --quick            # smaller shapes and fewer steps

What it runs, in order, each part time-boxed so the whole stays within ``--budget`` seconds
(default 480):

1. ``pytest -m cuda``: every CUDA-marked test (parity of the ``torch``, ``triton`` and, when it
   imports, ``mamba_ssm`` scans against the reference in fp32 and bf16; the causal-conv1d kernel).
2. The scan benchmark (``analysis.bench_scan``) on CUDA for ``torch``, ``triton`` and ``mamba_ssm``
   (when it imports) at (8, 1536, 1024, 16) and (2, 1536, 4096, 16), forward and forward+backward,
   fp32 and bf16, against the targets of ``analysis.bench_scan.TARGETS``.
3. Training steps/s and peak memory (``torch.cuda.max_memory_allocated``) of USM-B/1, ZigMa-B/1 and
   DiT-B/2 at 256 px (a 32x32x4 latent), batch 8, bf16 autocast, with the fastest scan available.
4. The ``mini`` scale's cost: the same measurement for its model and batch (USM-S/1, batch 32), and
   the hours one arm's training takes at that rate (``experiments/grids/ablations.py``).
5. The ``mini`` scale as it really trains (``analysis.trainer_rate``): ``usm.training.train`` on its
   data path -- the loader, the study's latent cache, EMA, clipping, stop checks -- on synthetic 256 px
   images through a VAE of SD-VAE's architecture with random weights (the real ones cannot be
   fetched here), and the hours per arm at that rate beside the microbenchmark's.

It writes ``results/gpu/gpu_check.json`` and ``gpu_check.md``, naming the device, torch, triton and
mamba_ssm versions, and what it could not run and why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from analysis.markdown import table as markdown_table
from usm.files import atomic_write
from usm.precision import use_tf32

SHAPES = [(8, 1536, 1024, 16), (2, 1536, 4096, 16)]
QUICK_SHAPES = [(8, 1536, 256, 16)]
MODELS = ["USM-B/1", "ZigMa-B/1", "DiT-B/2"]


def versions() -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for package in ("triton", "mamba_ssm", "causal_conv1d"):
        try:
            out[package] = __import__(package).__version__
        except Exception as exc:  # not installed, or a broken build
            out[package] = f"unavailable ({type(exc).__name__})"
    return out


def cuda_tests(timeout: float) -> dict:
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"],
                                capture_output=True, text=True, timeout=timeout)
        tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
        return {"returncode": result.returncode, "summary": tail[-1] if tail else "", "tail": tail,
                "seconds": round(time.monotonic() - started, 1)}
    except subprocess.TimeoutExpired:
        return {"returncode": None, "summary": f"timed out after {timeout:.0f} s", "tail": []}


def scan_benchmarks(shapes, deadline: float, repeats: int) -> list[dict]:
    from analysis.bench_scan import main as bench

    records = []
    for shape in shapes:
        for dtype in ("float32", "bfloat16"):
            for forward_only in (True, False):
                if time.monotonic() > deadline:
                    records.append({"shape": shape, "dtype": dtype, "skipped": "time budget used"})
                    continue
                argv = ["--device", "cuda", "--shape", *map(str, shape), "--dtype", dtype, "--repeats", str(repeats),
                        "--only", "torch", "triton", "mamba_ssm"]
                try:
                    records.append(bench(argv + (["--forward-only"] if forward_only else [])))
                except Exception as exc:  # record it and go on: one failure must not hide the rest
                    records.append({"shape": shape, "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"})
                torch.cuda.empty_cache()
    return records


def training_profile(models, batch: int, steps: int, deadline: float) -> list[dict]:
    from analysis.throughput import train_steps_per_second
    from usm.models.registry import build_model
    from usm.ssm import resolve_backend

    device = torch.device("cuda")
    records = []
    for name in models:
        if time.monotonic() > deadline:
            records.append({"model": name, "skipped": "time budget used"})
            continue
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            model = build_model(name).to(device)  # 32x32x4 latent: a 256 px image through SD-VAE
            x = torch.randn(batch, 4, 32, 32, device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                rate = train_steps_per_second(model, x, steps=steps, warmup=2)
            records.append({"model": name, "image_size": 256, "batch": batch, "dtype": "bf16 autocast",
                            "scan_backend": resolve_backend("auto", device), "train_steps_per_s": rate,
                            "images_per_s": rate * batch,
                            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
                            "params_m": sum(p.numel() for p in model.parameters()) / 1e6})
            del model
        except Exception as exc:
            records.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
    return records


def _num(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def mini_scale_cost(deadline: float, steps: int) -> dict:
    """Steps/s of the ablation grid's mini scale on this GPU and the projected hours of one arm."""
    from experiments.grids import GRIDS

    mini = GRIDS["ablations"].scales["mini"]
    batch, max_steps = mini.train["batch_size"], mini.train["max_steps"]
    record = training_profile([mini.model], batch=batch, steps=steps, deadline=deadline)[0]
    if "train_steps_per_s" in record:
        record["max_steps"] = max_steps
        record["hours_per_arm"] = max_steps / record["train_steps_per_s"] / 3600
    return record


def mini_through_trainer(deadline: float, steps: int) -> dict:
    """Steps/s of the mini scale's first point through the real trainer (``analysis.trainer_rate``)."""
    import tempfile

    from analysis.trainer_rate import first_point, measure
    from experiments.grids import GRIDS

    if time.monotonic() > deadline:
        return {"skipped": "time budget used"}
    point = first_point(GRIDS["ablations"], "mini")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            record = measure(point.settings, Path(workdir), steps=steps, warmup=3)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if record["trainer_steps_per_s"]:
        record["max_steps"] = point.settings["train"]["max_steps"]
        record["hours_per_arm"] = record["max_steps"] / record["trainer_steps_per_s"] / 3600
    return record


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device']}", "",
             f"Command: `{report['command']}`; {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             f"CUDA tests: {report['cuda_tests'].get('summary', '')}", "",
             "## Selective scan (seconds, median)", ""]
    scan_rows = []
    for r in report["scan"]:
        if "seconds" not in r:
            scan_rows.append([r.get("shape"), r.get("dtype"), "-", r.get("error") or r.get("skipped"), "", "", "", ""])
            continue
        cells = {k: f"{r['seconds'][k]:.4f}" if k in r["seconds"] else "-" for k in ("torch", "triton", "mamba_ssm")}
        scan_rows.append([tuple(r["shape"].values()), r["dtype"], r["mode"], cells["torch"], cells["triton"],
                          cells["mamba_ssm"], _num(r.get("speedup_of_triton_over_torch"), ".1f", "x"),
                          _num(r.get("triton_over_mamba_ssm_time"), ".2f")])
    lines.append(markdown_table(["shape (B, D, L, N)", "dtype", "mode", "torch", "triton", "mamba_ssm",
                                 "torch / triton", "triton / mamba_ssm"], scan_rows))
    lines += ["", "## Training at 256 px (32x32x4 latent)", ""]
    training_rows = []
    for r in report["training"]:
        if "train_steps_per_s" not in r:
            training_rows.append([r["model"], "", "", r.get("error") or r.get("skipped"), "", "", ""])
            continue
        training_rows.append([r["model"], r["batch"], r["scan_backend"], f"{r['train_steps_per_s']:.2f}",
                              f"{r['images_per_s']:.1f}", f"{r['peak_memory_gib']:.1f}", f"{r['params_m']:.1f}"])
    lines.append(markdown_table(["model", "batch", "scan", "steps/s", "images/s", "peak memory (GiB)", "params (M)"],
                                training_rows))
    mini = report.get("mini")
    if mini:
        lines += ["", "## The mini scale's cost", ""]
        if "hours_per_arm" in mini:
            lines.append(f"{mini['model']} at batch {mini['batch']}: {mini['train_steps_per_s']:.2f} steps/s, so "
                         f"{mini['max_steps']:,} steps take {mini['hours_per_arm']:.2f} h per arm (training only).")
        else:
            lines.append(f"not measured: {mini.get('error') or mini.get('skipped')}")
    real = report.get("mini_trainer")
    if real:
        if real.get("hours_per_arm"):
            lines.append(f"Through the trainer ({real['data']}, latent: {real['latent']}, {real['mixed_precision']}): "
                         f"{real['trainer_steps_per_s']:.2f} steps/s over {real['steps_timed']} steps, so "
                         f"{real['hours_per_arm']:.2f} h per arm; building the latent cache of its images took "
                         f"{real['latent_cache_seconds']:.1f} s.")
        else:
            lines.append(f"Through the trainer: not measured: {real.get('error') or real.get('skipped')}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check (default 480)")
    parser.add_argument("--quick", action="store_true", help="one small scan shape, fewer steps")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest -m cuda part")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: the GPU check needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.budget
    report = {"device": torch.cuda.get_device_name(0), "tf32": use_tf32("cuda"),  # as the trainer runs fp32
              "command": "python -m analysis gpu-check "
              + " ".join(argv if argv is not None else sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                           time.gmtime()),
              "versions": versions()}
    print(f"GPU check on {report['device']}", flush=True)
    report["cuda_tests"] = {"skipped": "--skip-tests"} if args.skip_tests else cuda_tests(0.3 * args.budget)
    print(f"cuda tests: {report['cuda_tests'].get('summary', report['cuda_tests'])}", flush=True)
    report["scan"] = scan_benchmarks(QUICK_SHAPES if args.quick else SHAPES, started + 0.75 * args.budget,
                                     repeats=3)
    report["training"] = training_profile(MODELS, batch=8, steps=3 if args.quick else 5, deadline=deadline - 45)
    report["mini"] = mini_scale_cost(deadline - 40, steps=3 if args.quick else 5)
    report["mini_trainer"] = mini_through_trainer(deadline, steps=5 if args.quick else 20)
    report["seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2, default=str))
    atomic_write(out / "gpu_check.md", markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
