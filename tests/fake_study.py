"""A small study written the way the trainer and the launcher write one (for analysis tests)."""

import json
from pathlib import Path

# arm -> (swd per seed, shape coverage per seed, gflops); seed 2 of "no-skip" is left incomplete.
ARMS = {"recipe": ([10.0, 12.0, 14.0], [0.40, 0.42, 0.44], 1.5),
        "no-skip": ([20.0, 22.0, None], [0.10, 0.13, None], 1.2)}
SAMPLING_STD = 0.02  # every run's bootstrap spread of shape coverage


def make_study(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for arm, (swds, coverages, gflops) in ARMS.items():
        for seed, (value, coverage) in enumerate(zip(swds, coverages)):
            run = root / f"{arm}-s{seed}"
            (run / "metrics" / "curve").mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({
                "identity": {"model": {"model": "USM-T/2"}, "train": {"seed": seed}},
                "runtime": {"max_steps": 100}}))
            point = {"arm": arm, "axes": {"skip_conn": arm == "recipe"}, "seed": seed, "order": list(ARMS).index(arm)}
            (run / "point.json").write_text(json.dumps(point))
            steps = range(10, 101 if value is not None else 51, 10)
            (run / "stats.jsonl").write_text("".join(
                json.dumps({"step": s, "loss": 1.0 / s + seed * 0.01}) + "\n" for s in steps))
            for step in (50, 100) if value is not None else (50,):  # the learning curve
                (run / "metrics" / "curve" / f"step-{step:09d}.json").write_text(json.dumps(
                    {"step": step, "images_seen": step * 8, "num_samples": 4,
                     "shape_coverage": (coverage or 0.1) * step / 100}))
            if value is not None:
                (run / "metrics" / "quality.json").write_text(json.dumps({
                    "swd": value, "swd_levels": [value, value], "shape_coverage": coverage,
                    "shape_coverage_sampling_std": SAMPLING_STD}))
                (run / "metrics" / "cost.json").write_text(json.dumps({"gflops": gflops, "params": 1000 * (seed + 1)}))
                (run / "done").touch()
    return root
