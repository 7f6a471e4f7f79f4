"""The prepared GPU check: CUDA parity tests, scan benchmarks, a short training profile (one command).

    python -m analysis gpu-check                    # within --budget seconds (480); writes results/gpu/
    python -m analysis gpu-check --quick            # smaller shapes and fewer steps

What it runs, in order, each part time-boxed so the whole stays within ``--budget`` seconds
(default 480):

1. ``pytest -m cuda``: every CUDA-marked test (parity of the ``torch``, ``triton`` and, when it
   imports, ``mamba_ssm`` scans against the reference in fp32 and bf16; the causal-conv1d kernel).
2. The scan benchmark (``analysis.bench.bench_scan``) on CUDA for ``torch``, ``triton`` and ``mamba_ssm``
   (when it imports) at (8, 1536, 1024, 16) and (2, 1536, 4096, 16), forward and forward+backward,
   fp32 and bf16, against the targets of ``analysis.bench.bench_scan.TARGETS``.
3. Training steps/s and peak memory (``torch.cuda.max_memory_allocated``) of USM-B/1, ZigMa-B/1 and
   DiT-B/2 at 256 px (a 32x32x4 latent), batch 8, bf16 autocast, with the fastest scan available.
4. The ``mini`` scale's cost: the same measurement for its model and batch (USM-S/1, batch 32), and
   the hours one arm's training takes at that rate (``experiments/grids/ablations.py``).
5. The ``mini`` scale as it really trains (``analysis.bench.trainer_rate``): ``usm.training.train`` on its
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

from usm.devices import default_device, device_name
from usm.files import atomic_write
from usm.markdown import table as markdown_table
from usm.precision import use_tf32

SHAPES = [(8, 1536, 1024, 16), (2, 1536, 4096, 16)]
QUICK_SHAPES = [(8, 1536, 256, 16)]
MODELS = ["USM-B/1", "ZigMa-B/1", "DiT-B/2"]
CPU_MODELS = ["USM-T/2", "ZigMa-T/2", "DiT-T/2"]  # --quick without a GPU: the same path, tiny
CPU_SHAPES = [(2, 64, 256, 16)]
SCAN_COLUMNS = ("torch", "triton", "mamba_ssm", "numba")  # numba: the CPU backend of --quick without a GPU


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


def scan_benchmarks(shapes, deadline: float, repeats: int, device: str = "cuda") -> list[dict]:
    from analysis.bench.bench_scan import main as bench

    records = []
    backends = ["torch", "triton", "mamba_ssm"] if device == "cuda" else ["torch", "numba"]
    for shape in shapes if device == "cuda" else CPU_SHAPES:
        for dtype in ("float32", "bfloat16") if device == "cuda" else ("float32",):
            for forward_only in (True, False):
                if time.monotonic() > deadline:
                    records.append({"shape": shape, "dtype": dtype, "skipped": "time budget used"})
                    continue
                argv = ["--device", device, "--shape", *map(str, shape), "--dtype", dtype, "--repeats", str(repeats),
                        "--threads", str(torch.get_num_threads()), "--only", *backends]
                try:
                    records.append(bench(argv + (["--forward-only"] if forward_only else [])))
                except Exception as exc:  # record it and go on: one failure must not hide the rest
                    records.append({"shape": shape, "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"})
    return records


def training_profile(models, batch: int, steps: int, deadline: float, device: str = "cuda") -> list[dict]:
    from contextlib import nullcontext

    from analysis.metrics.throughput import train_steps_per_second
    from usm.models.registry import build_model
    from usm.ssm import resolve_backend

    where = torch.device(device)
    records = []
    for name in models:
        if time.monotonic() > deadline:
            records.append({"model": name, "skipped": "time budget used"})
            continue
        try:
            if device == "cuda":  # each model's own peak, not the largest so far
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(where)
            model = build_model(name).to(where)  # 32x32x4 latent: a 256 px image through SD-VAE
            x = torch.randn(batch, 4, 32, 32, device=where)
            with torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext():
                rate = train_steps_per_second(model, x, steps=steps, warmup=2)
            records.append({"model": name, "image_size": 256, "batch": batch,
                            "dtype": "bf16 autocast" if device == "cuda" else "fp32",
                            "scan_backend": resolve_backend("auto", where), "train_steps_per_s": rate,
                            "images_per_s": rate * batch,
                            "peak_memory_gib": torch.cuda.max_memory_allocated(where) / 2**30 if device == "cuda"
                            else None,
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

    mini = GRIDS["ablations"].scales["mini"].settings
    batch, max_steps = mini.train["batch_size"], mini.train["max_steps"]
    record = training_profile([mini.model], batch=batch, steps=steps, deadline=deadline)[0]
    if "train_steps_per_s" in record:
        record["max_steps"] = max_steps
        record["hours_per_arm"] = max_steps / record["train_steps_per_s"] / 3600
    return record


def mini_through_trainer(deadline: float, steps: int, scale: str = "mini") -> dict:
    """Steps/s of the ``scale``'s first point (the mini scale's on a GPU) through the real trainer
    (``analysis.bench.trainer_rate``)."""
    import tempfile

    from analysis.bench.trainer_rate import first_point, measure
    from experiments.grids import GRIDS

    if time.monotonic() > deadline:
        return {"skipped": "time budget used"}
    point = first_point(GRIDS["ablations"], scale)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            record = measure(point.settings, Path(workdir), steps=steps, warmup=3)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if record["trainer_steps_per_s"]:
        record["max_steps"] = point.settings.train["max_steps"]
        record["hours_per_arm"] = record["max_steps"] / record["trainer_steps_per_s"] / 3600
    return record


def stage_records(report: dict, stage: str) -> list[dict]:
    """A list stage's records: none before it ran, its one error record if it failed as a whole."""
    value = report.get(stage)
    return [] if value is None else [value] if isinstance(value, dict) else value


def stage_text(record: dict, key: str) -> str:
    """A stage's one-line result: its ``key``, else its error or why it was skipped ('' before it ran)."""
    return str(record.get(key) or record.get("error") or record.get("skipped") or "")


def markdown(report: dict) -> str:
    versions_ = report.get("versions", {})
    lines = [f"# GPU check: {report['device']}", "",
             f"Command: `{report['command']}`; {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in versions_.items()) + ".", "",
             "Stages finished (seconds): " + (", ".join(f"{k} {v}" for k, v in report.get("stage_seconds", {}).items())
                                              or "none yet") + ".", "",
             f"CUDA tests: {stage_text(report.get('cuda_tests', {}), 'summary')}", "",
             "## Selective scan (seconds, median)", ""]
    scan_rows = []
    for r in stage_records(report, "scan"):
        if "seconds" not in r:
            scan_rows.append([r.get("shape"), r.get("dtype"), "-", r.get("error") or r.get("skipped"),
                              *[""] * (len(SCAN_COLUMNS) + 1)])
            continue
        cells = {k: f"{r['seconds'][k]:.4f}" if k in r["seconds"] else "-" for k in SCAN_COLUMNS}
        scan_rows.append([tuple(r["shape"].values()), r["dtype"], r["mode"], *cells.values(),
                          _num(r.get("speedup_of_triton_over_torch"), ".1f", "x"),
                          _num(r.get("triton_over_mamba_ssm_time"), ".2f")])
    lines.append(markdown_table(["shape (B, D, L, N)", "dtype", "mode", *SCAN_COLUMNS,
                                 "torch / triton", "triton / mamba_ssm"], scan_rows))
    lines += ["", "## Training at 256 px (32x32x4 latent)", ""]
    training_rows = []
    for r in stage_records(report, "training"):
        if "train_steps_per_s" not in r:
            training_rows.append([r.get("model", "-"), "", "", r.get("error") or r.get("skipped"), "", "", ""])
            continue
        training_rows.append([r["model"], r["batch"], r["scan_backend"], f"{r['train_steps_per_s']:.2f}",
                              f"{r['images_per_s']:.1f}", _num(r["peak_memory_gib"], ".1f"), f"{r['params_m']:.1f}"])
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


# (stage, what it runs, seconds it takes on one H100 as planned; the GPU check has never run, so these
# are the budget's shares, not measurements)
STAGES = [("versions", "device and package versions", 1), ("cuda_tests", "pytest -m cuda", 0.3),
          ("scan", "scan benchmark", 0.45), ("training", "training steps/s and peak memory", 0.15),
          ("mini", "the mini scale's cost", 0.05), ("mini_trainer", "the mini scale through the trainer", 0.05)]


def plan(budget: float, quick: bool, device: str) -> str:
    shares = {name: (1 if name == "versions" else share * budget) for name, _, share in STAGES}
    lines = [f"GPU check on {device} ({'quick, ' if quick else ''}budget {budget:.0f} s), stages in order:"]
    lines += [f"  {i}. {name}: {what} (up to about {shares[name]:.0f} s)"
              for i, (name, what, _) in enumerate(STAGES, 1)]
    return "\n".join(lines)


def run_stage(name: str, work, report: dict, out: Path, device: str) -> None:
    """Run one stage, whatever it raises (a CUDA fault included), and write its record at once:
    ``gpu_check.json`` / ``.md`` refreshed with every stage so far, then a line of ``gpu_check.jsonl``
    (so a stage with a line is in the other two), and a kill or a time limit leaves the finished
    stages on disk. Torch's thread count and the
    device's peak-memory counter are reset for every stage."""
    threads, started = torch.get_num_threads(), time.monotonic()
    try:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        report[name] = work()
    except Exception as exc:  # noqa: BLE001 - one stage's failure must not take the others' records
        report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        torch.set_num_threads(threads)
        if device == "cuda":
            try:
                torch.cuda.empty_cache()
            except Exception as exc:  # a broken context: the next stages will say so in their own records
                report.setdefault("faults", []).append(f"{name}: empty_cache: {type(exc).__name__}: {exc}")
    seconds = round(time.monotonic() - started, 1)
    report.setdefault("stage_seconds", {})[name] = seconds
    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2, default=str))
    atomic_write(out / "gpu_check.md", markdown(report))
    with open(out / "gpu_check.jsonl", "a") as f:  # last: a stage's line means the JSON and Markdown hold it
        f.write(json.dumps({"stage": name, "seconds": seconds, "record": report[name]}, default=str) + "\n")
    summary = report[name].get("error") or report[name].get("summary") or report[name].get("skipped") \
        if isinstance(report[name], dict) else f"{len(report[name])} records"
    print(f"[{name}] {seconds} s: {summary or 'done'}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu", help="folder for gpu_check.json, .jsonl and .md")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check (default 480)")
    parser.add_argument("--quick", action="store_true", help="one small scan shape, fewer steps; without a GPU, "
                                                             "the stages that can run on the CPU")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest -m cuda part")
    args = parser.parse_args(argv)
    device = default_device()
    if device == "cpu" and not args.quick:
        print("error: the GPU check needs a CUDA GPU (torch.cuda.is_available() is False); --quick runs the "
              "stages that can run on the CPU", file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.jsonl").unlink(missing_ok=True)  # the records of this run only
    report = {"device": device_name(torch.device(device)) + ("" if device == "cuda" else " (CPU)"),
              "tf32": use_tf32(device),  # as the trainer runs fp32
              "command": "python -m analysis gpu-check " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(plan(args.budget, args.quick, report["device"]), flush=True)
    quick, steps = args.quick, 3 if args.quick else 5
    stages = {
        "versions": versions,
        "cuda_tests": (lambda: {"skipped": "--skip-tests"}) if args.skip_tests else lambda: cuda_tests(
            0.3 * args.budget),
        "scan": lambda: scan_benchmarks(QUICK_SHAPES if quick else SHAPES, started + 0.75 * args.budget, 3, device),
        "training": lambda: training_profile(MODELS if device == "cuda" else CPU_MODELS, 8 if device == "cuda" else 2,
                                             steps, deadline - 45, device),
        "mini": (lambda: mini_scale_cost(deadline - 40, steps)) if device == "cuda" else (
            lambda: {"skipped": "the mini scale's cost needs a GPU"}),
        "mini_trainer": lambda: mini_through_trainer(deadline, 5 if quick else 20,
                                                     scale="mini" if device == "cuda" else "smoke"),
    }
    for name, _, _ in STAGES:
        run_stage(name, stages[name], report, out, device)
    report["seconds"] = round(time.monotonic() - started, 1)
    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2, default=str))
    atomic_write(out / "gpu_check.md", markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'gpu_check.json'}, .jsonl and .md in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
