"""Where one CPU training step's time goes, per scan backend (torch.profiler, self CPU time by operator).

    python -m analysis.step_profile                       # USM-T/1 on 16x16x1, batch 8, 1 thread
    python -m analysis.step_profile --model USM-T/2 --image-size 32 --channels 3 --backends torch numba

For each backend: steps/s (median of timed steps after a warm-up; the backends take turns step by
step) and the operators with the most self CPU time over a few profiled steps (forward, backward
and AdamW, as the trainer runs them).
"""

from __future__ import annotations

import argparse
import time

import torch

from analysis.bench_scan import take_turns
from usm.models.registry import build_model
from usm.rectified_flow import training_loss


def make_step(model_name: str, image_size: int, channels: int, batch: int, backend: str):
    torch.manual_seed(0)
    model = build_model(model_name, input_size=image_size, in_channels=channels, scan_backend=backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, channels, image_size, image_size)

    def step():
        loss = training_loss(model, x, None, "log", torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def steps_per_second(steps: dict, repeats: int) -> dict:
    """Median steps/s of each backend's step after three warm-up steps (numba's first-call compile
    or cache load among them); the backends take turns step by step (``take_turns``)."""
    def timed(step):
        def once():
            start = time.perf_counter()
            step()
            return time.perf_counter() - start
        return once

    seconds = take_turns({backend: timed(step) for backend, step in steps.items()}, repeats, warmups=3)
    return {backend: 1 / value for backend, value in seconds.items()}


def profile_table(step, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.step_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="USM-T/1")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per backend")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--backends", nargs="+", default=["torch", "numba"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {backend: make_step(args.model, args.image_size, args.channels, args.batch, backend)
             for backend in args.backends}
    rates = steps_per_second(steps, args.steps)
    for backend, step in steps.items():
        print(f"## {args.model}, {args.image_size}x{args.image_size}x{args.channels}, batch {args.batch}, "
              f"{args.threads} thread(s), scan backend {backend}: {rates[backend]:.2f} steps/s\n")
        print("```\n" + profile_table(step, args.rows).strip() + "\n```\n", flush=True)
    if len(rates) > 1:
        base = args.backends[0]
        for backend in args.backends[1:]:
            print(f"steps/s with {backend} over {base}: {rates[backend] / rates[base]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
