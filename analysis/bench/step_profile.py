"""Where one CPU training step's time goes, per scan backend (torch.profiler, self CPU time by operator).

    python -m analysis step-profile                       # USM-T/1 on 16x16x1, batch 8, 1 thread
    python -m analysis step-profile --model USM-T/2 --image-size 32 --channels 3 --backends torch numba
    python -m analysis step-profile --model UNet-T --backends none    # a model without a scan backend
    python -m analysis step-profile --model-arg expand=1 d_state=8    # the smoke study's lean mixer

For each backend: steps/s (median of timed steps after a warm-up; the backends take turns step by
step) and the operators with the most self CPU time over a few profiled steps (forward, backward,
fused AdamW and the EMA update, as the trainer runs them). Every run also measures the machine's own limit on the same
threads -- a large float32 matrix product (``matmul_gflops``) -- and reports each step's achieved
rate against it: training FLOPs per step = 3 x the forward's multiply-adds x 2 x batch (the
backward costs about twice the forward), the forward counted by ``analysis.metrics.flops``, and the aten
operators one step dispatches (``aten_operators``).
"""

from __future__ import annotations

import argparse
import time

import torch

from analysis.bench.bench_scan import take_turns
from usm.cli import parse_assignments
from usm.models.registry import build_model
from usm.provenance import stamp, stamp_line
from usm.rectified_flow import training_loss
from usm.training.ema import make_ema, update_ema


def make_step(model_name: str, image_size: int, channels: int, batch: int, backend: str, **model_args):
    torch.manual_seed(0)
    scan = {} if backend == "none" else {"scan_backend": backend}  # "none": a model without a scan
    model = build_model(model_name, input_size=image_size, in_channels=channels, **scan, **model_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the trainer builds it
    ema = make_ema(model)
    x = torch.randn(batch, channels, image_size, image_size)

    def step():
        loss = training_loss(model, x, None, "logit_normal", torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_ema(ema, model, 0.99)

    return step


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The CPU's float32 matrix-product rate on torch's current threads (GFLOP/s, 2 n^3 per product,
    the best of ``repeats``): the most any step built from matrix products could reach here."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: thread pool, caches
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_gflop(model_name: str, image_size: int, channels: int, batch: int, **model_args) -> float:
    """GFLOP of one training step: forward multiply-adds x 2 FLOPs x 3 (forward + backward) x batch."""
    from analysis.metrics.flops import count_registered

    forward = count_registered(model_name, input_size=image_size, in_channels=channels, **model_args).gflops
    return forward * 2 * 3 * batch


def steps_per_second(steps: dict, repeats: int) -> dict:
    """Median steps/s of each backend's step after three warm-up steps (numba's first-call compile
    or cache load among them); the backends take turns step by step (``take_turns``)."""
    seconds = take_turns({backend: (lambda step=step: _seconds(step)) for backend, step in steps.items()}, repeats,
                         warmups=3)
    return {backend: 1 / value for backend, value in seconds.items()}


def aten_operators(step) -> int:
    """The aten operators one step dispatches (forward, backward, optimizer, EMA; views included):
    each costs a dispatch however small its tensors, so this is the step's fixed cost in calls."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        step()
    return Count.calls


def profile_table(step, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis step-profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="USM-T/1")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per backend")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--backends", nargs="+", default=["torch", "numba"])
    parser.add_argument("--model-arg", action="extend", nargs="*", default=[], metavar="KEY=VALUE",
                        help="constructor arguments replacing the defaults, e.g. expand=1 d_state=8 (the smoke "
                             "study's lean mixer)")
    args = parser.parse_args(argv)
    model_args = parse_assignments(args.model_arg, "--model-arg")
    torch.set_num_threads(args.threads)
    steps = {backend: make_step(args.model, args.image_size, args.channels, args.batch, backend, **model_args)
             for backend in args.backends}
    rates = steps_per_second(steps, args.steps)
    limit = matmul_gflops()
    work = step_gflop(args.model, args.image_size, args.channels, args.batch, **model_args)
    model = args.model + "".join(f" {k}={v}" for k, v in model_args.items())
    print(f"machine limit: {limit:.1f} GFLOP/s (2048x2048 float32 matrix product, {args.threads} thread(s)); "
          f"one step: {work:.3f} GFLOP\n")
    for backend, step in steps.items():
        achieved = rates[backend] * work
        print(f"## {model}, {args.image_size}x{args.image_size}x{args.channels}, batch {args.batch}, "
              f"{args.threads} thread(s), scan backend {backend}: {rates[backend]:.2f} steps/s, "
              f"{rates[backend] * args.batch / args.threads:.1f} images/s per core, {achieved:.2f} GFLOP/s "
              f"= {achieved / limit:.1%} of the machine's limit; {aten_operators(step):,} aten operators a step\n")
        print("```\n" + profile_table(step, args.rows).strip() + "\n```\n", flush=True)
    if len(rates) > 1:
        base = args.backends[0]
        for backend in args.backends[1:]:
            print(f"steps/s with {backend} over {base}: {rates[backend] / rates[base]:.2f}x")
    print("\n" + stamp_line(stamp("step")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
