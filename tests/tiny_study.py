"""The smallest study a test can launch: a few steps, a few samples, a learning curve (shared by the
tests that run the launcher end to end)."""

from pathlib import Path

TINY = ["--set", "train.max_steps=4", "train.ckpt_every=2", "num_samples=8", "sample_steps=2",
        "eval_every=2", "eval_samples=4"]
ONE_POINT = "model=DiT,dataset=shapes-s0"  # of the paper grid at smoke scale: the fastest point


def run_one_point(results: Path, *settings: str) -> int:
    """Launch the paper grid's DiT point on the embedded shapes in this process (submitit's debug
    executor); ``settings`` are more ``--set`` assignments. The launcher's exit code."""
    from experiments.run import main as run_main

    return run_main(["--grid", "paper", "--cluster", "debug", "--results", str(results), "--only", ONE_POINT,
                     *TINY, *settings])
