"""How few sampling steps a trained run needs: solvers and step counts from the same noise, scored
by the study's metrics.

    python -m analysis sampler-sweep results/ablations/recipe-s0 --checkpoints 960 --num 128
    python -m analysis sampler-sweep RUN --solvers euler:25 heun:12 euler:12 heun:6 --out sweep.md

For each checkpoint (EMA weights) and each ``SOLVER:STEPS``, draws ``--num`` images from the noise
a study point draws them from (image i's from (seed, "sample", i)), so the rows differ only in
the solver. It times the sampling (seconds per image on this process's share of the CPUs) and
scores the images with ``analysis.metrics.quality`` against the run's data: the headline metrics and
pixel precision, each with its bootstrap spread over resamplings of the samples. A model
evaluation costs the same in every row, so ``evaluations`` (Euler: one per step; Heun: two) is
what the time follows. The table goes to stdout and, with ``--out FILE.md``, to FILE.md, with
the numbers in FILE.json and the first 16 images of every row in FILE.png (and .pdf) beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from usm.cli import UsageError
from usm.files import atomic_write
from usm.markdown import table
from usm.provenance import UNRECORDED, stamp, stamp_line
from usm.rectified_flow import SAMPLERS, sample
from usm.threads import use_cpu_share
from usm.training.sampling import SampleError

EVALUATIONS_PER_STEP = {"euler": 1, "heun": 2}
COLUMNS = ("shape_coverage", "shape_density", "precision")  # the headline, then pixel precision (†)


def parse_solver(text: str) -> tuple[str, int]:
    method, _, steps = text.partition(":")
    if method not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise UsageError(f"--solvers {text}: write SOLVER:STEPS, SOLVER one of {', '.join(sorted(SAMPLERS))} "
                         "and STEPS at least 1 (e.g. heun:12)")
    return method, int(steps)


def checkpoint_files(run: Path, steps: list[int] | None) -> list[tuple[int, Path]]:
    """(step, file) of the run's checkpoints: the ones asked for, else the newest that verifies (a
    damaged newer one is skipped with a warning, as the sampler does)."""
    from usm.training.checkpoint import PATTERN, list_checkpoints, newest_verified
    from usm.training.run_dir import RunDir

    found = {int(PATTERN.match(p.name).group(1)): p for p in list_checkpoints(RunDir(run).checkpoints)}
    if not found:
        raise UsageError(f"{run} holds no checkpoints (checkpoints/step_*.pt): train it first")
    if not steps:
        newest, _ = newest_verified(RunDir(run).checkpoints)
        if newest is None:
            raise UsageError(f"none of the checkpoints of {run} verifies (each is damaged or cut short)")
        return [(newest[0], newest[2])]
    missing = sorted(set(steps or []) - found.keys())
    if missing:
        raise UsageError(f"--checkpoints {' '.join(map(str, missing))}: {run} holds steps "
                         f"{', '.join(map(str, sorted(found)))}")
    return [(step, found[step]) for step in (steps or [max(found)])]


def draw(model, shape: tuple, num: int, method: str, steps: int, seed: int, batch: int) -> tuple[np.ndarray, float]:
    """(uint8 images (num, H, W, C), seconds per image) for one solver."""
    from usm.training.sampling import sample_noise, to_uint8

    out, started = [], time.perf_counter()
    for start in range(0, num, batch):
        noise = sample_noise(seed, range(start, min(num, start + batch)), shape)
        out.append(to_uint8(sample(model, noise, steps, method)))
    return np.concatenate(out), (time.perf_counter() - started) / num


def sweep(run: Path, checkpoints: list[int] | None, solvers: list[tuple[str, int]], num: int, seed: int = 0,
          batch: int = 64) -> tuple[dict, list]:
    """(the record: one row per checkpoint and solver; (label, first 16 images) per row)."""
    from analysis.metrics.quality import bootstrap, quality, reference_images
    from usm.training.sampling import load_run_model

    rows, images_of, data = [], [], None
    for step, path in checkpoint_files(run, checkpoints):
        model, state, _ = load_run_model(path)
        derived, data = state["config"]["derived"], state["config"]["identity"]["data"]
        if data["latent"] != "none":
            raise UsageError(f"{run} trained on {data['latent']} latents: the sweep scores pixel-space runs")
        if derived["num_classes"] or derived["d_context"]:
            raise UsageError(f"{run} is a conditional run: the sweep draws unconditional ones (as the studies train)")
        shape = (derived["in_channels"], derived["input_size"], derived["input_size"])
        reference = reference_images(data["data"], data["resolution"], num)
        if not images_of:
            images_of.append(("real (training images)", reference[:16]))
        draw(model, shape, 2, "euler", 1, seed, batch)  # untimed: the first call pays for kernel loading
        for method, steps in solvers:
            images, seconds = draw(model, shape, num, method, steps, seed, batch)
            scores = quality(reference, images, data["data"], data["resolution"], swd=False)
            spread = bootstrap(reference, images, data["data"], data["resolution"])
            images_of.append((f"step {step}, {method} {steps}", images[:16]))
            rows.append({"step": step, "solver": method, "steps": steps,
                         "evaluations": steps * EVALUATIONS_PER_STEP[method], "seconds_per_image": seconds,
                         **{m: scores[m] for m in COLUMNS if m in scores},
                         **{f"{m}_sampling_std": spread[m] for m in COLUMNS if m in spread}})
    name = f"{run.resolve().parent.name}/{run.resolve().name}"
    return {"run": name, "data": data["data"], "resolution": data["resolution"], "num": num, "seed": seed,
            "threads": torch.get_num_threads(), "rows": rows, "code": stamp("sampler")}, images_of


def render(record: dict) -> str:
    from analysis.metrics.quality import HEADLINE, QUALITY_METRICS

    metrics = [m for m in COLUMNS if m in record["rows"][0]]
    header = ["checkpoint step", "solver", "steps", "evaluations", "s / image",
              *(QUALITY_METRICS[m].label + ("" if m in HEADLINE else " †") for m in metrics)]
    body = [[r["step"], r["solver"], r["steps"], r["evaluations"], f"{r['seconds_per_image']:.4f}",
             *(f"{r[m]:.3f} ± {r[m + '_sampling_std']:.3f}" for m in metrics)] for r in record["rows"]]
    return (table(header, body) + f"\n\n{record['num']} samples per row from the same noise (seed {record['seed']}), "
            f"EMA weights of the run {record['run']}, on {record['data']} at {record['resolution']} px; ± : the spread "
            f"over resamplings of the samples; seconds on {record['threads']} thread(s). † : not a headline metric "
            "(docs/metrics.md).\n\n" + stamp_line(record.get("code", f"sampler@{UNRECORDED}")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis sampler-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (a study point's folder, or usm.train's --run-dir)")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=None, metavar="STEP",
                        help="checkpoint steps to sample (default: the newest)")
    parser.add_argument("--solvers", nargs="+", default=["euler:25", "euler:12", "heun:12", "heun:6"],
                        metavar="SOLVER:STEPS", help="default: euler:25 (the paper's) euler:12 heun:12 heun:6")
    parser.add_argument("--num", type=int, default=128, help="images per row (default 128, the smoke study's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this .md (and its .json)")
    args = parser.parse_args(argv)
    try:
        if args.num < 4:
            raise UsageError(f"--num {args.num}: the k-NN metrics need at least 4 images")
        solvers = [parse_solver(text) for text in args.solvers]
        use_cpu_share()
        record, images = sweep(args.run, args.checkpoints, solvers, args.num, args.seed)
    except (UsageError, SampleError) as exc:  # SampleError: a checkpoint asked for that does not verify
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render(record)
    print(text)
    if args.out is not None:
        atomic_write(args.out, text + "\n")
        atomic_write(args.out.with_suffix(".json"), json.dumps(record, indent=2))
        from analysis.report.plots import image_rows

        image_rows(images, args.out.parent, args.out.stem)
        print(f"wrote {args.out} and its .json, .png and .pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
