"""A point's work, each step resumable: train (pausing at each evaluation step of its learning
curve to sample and score it), sample, then measure (FLOPs, cost, quality). ``experiments.point``
runs these under the point's lock and records the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from analysis.metrics.run_cost import point_cost, sampling_record
from experiments.settings import Settings
from usm.devices import default_device, device_name
from usm.files import atomic_write


def produce(directory: Path, s: Settings) -> dict:
    """Train the point's run to its last step, then draw its final samples (both resume), recording
    how long the sampling took. Returns the model's constructor arguments, as the trainer built it."""
    from usm.training import generate

    model_config = train_point(directory, s)
    sampling = s.sample_config(directory)
    started = time.monotonic()
    drawn = generate(sampling)
    seconds = time.monotonic() - started
    sampling_record(directory, seconds, drawn.new, device_name(torch.device(sampling.device)))
    return model_config


def score(s: Settings, samples: np.ndarray, sample_dir: Path, swd: bool = True) -> dict:
    """The quality metrics of a set of the point's samples: computed here on SWD-scale data, else FID.
    Learning-curve points leave SWD out (``swd=False``): it takes seconds, and it failed the metric
    validation, so no curve shows it."""
    if s.metric == "pixel":
        from analysis.metrics.quality import quality, reference_images

        return quality(reference_images(s.data, s.resolution, len(samples)), samples, s.data, s.resolution, swd=swd)
    from analysis.metrics.fid import compute_metrics
    return compute_metrics(sample_dir, s.data, num=len(samples), prc=True, device=default_device())


def measure(directory: Path, s: Settings, model_config: dict) -> dict:
    """FLOPs, parameters, cost and quality of the point's final samples; ``model_config`` is the
    constructor arguments the run trained with (sizes, conditioning, model_args)."""
    from analysis.metrics.flops import count_registered

    flops = count_registered(s.model, **model_config)
    final = directory / "samples" / "final"
    samples = np.load(final / "samples.npz")["images"]
    out = {"gflops": flops.gflops, "params": flops.params, "num_samples": len(samples),
           **point_cost(directory, s.model, model_config, s.train["batch_size"],
                        device_name(torch.device(default_device())))}
    out.update(score(s, samples, final))
    if s.metric == "pixel":  # how much of each score is due to which samples were drawn
        from analysis.metrics.quality import bootstrap, reference_images

        spread = bootstrap(reference_images(s.data, s.resolution, len(samples)), samples, s.data, s.resolution)
        out.update({f"{name}_sampling_std": value for name, value in spread.items()})
        if s.eval_every:  # the curve's last point: the first eval_samples final samples, which are
            # exactly the images an evaluation would have drawn (image i's noise derives from (seed, i))
            first = samples[:s.eval_samples]
            write_curve_point(directory, s, s.train["max_steps"], score(s, first, final, swd=False), first)
    return out


def curve_file(directory: Path, step: int) -> Path:
    return directory / "metrics" / "curve" / f"step-{step:09d}.json"


def write_curve_point(directory: Path, s: Settings, step: int, metrics: dict, samples: np.ndarray) -> None:
    """Record one evaluation of the learning curve, and send it (and 16 of its samples) to the run's
    trackers when the study has one (``log_with``)."""
    from usm.training.trackers import log_evaluation

    path = curve_file(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"step": step, "images_seen": step * s.train["batch_size"], "num_samples": s.eval_samples, **metrics}
    atomic_write(path, json.dumps(record, indent=2))
    log_evaluation(s.log_with, directory, step, metrics, samples[:16], s.train.get("mixed_precision", "no"))


def evaluate_during_training(directory: Path, s: Settings) -> None:
    """Sample and score the newest checkpoint when it sits at an evaluation step that has no curve
    point yet (``samples/curve/step-N``, ``metrics/curve/step-N.json``): the learning curve. Only
    SWD-scale data is scored here; FID-scale curves keep their samples for a later FID."""
    from usm.training import generate
    from usm.training.checkpoint import PATTERN, checkpoint_path, list_checkpoints
    from usm.training.run_dir import RunDir

    checkpoints = RunDir(directory).checkpoints
    found = list_checkpoints(checkpoints)
    step = int(PATTERN.match(found[-1].name).group(1)) if found else 0
    if not step or step % s.eval_every or step >= s.train["max_steps"] or curve_file(directory, step).exists():
        return
    out = directory / "samples" / "curve" / f"step-{step:09d}"
    generate(dataclasses.replace(s.sample_config(directory), target=str(checkpoint_path(checkpoints, step)),
                                 num=s.eval_samples, out=str(out)))
    samples = np.load(out / "samples.npz")["images"]
    write_curve_point(directory, s, step, score(s, samples, out, swd=False) if s.metric == "pixel" else {}, samples)


def train_point(directory: Path, s: Settings, evaluate: bool = True) -> dict:
    """Train the point's run to its last step; with a learning curve (``eval_every``) the trainer
    pauses at every evaluation step and rank 0 (``evaluate``) samples and scores it there. Any other
    outcome than "done" or such a pause (a time budget, a divergence) is an error, as before.
    Returns the model's constructor arguments, as the trainer built it."""
    from usm.training import train

    config, every = s.trainer_config(directory), s.eval_every
    while True:
        if every and evaluate:
            evaluate_during_training(directory, s)
        outcome = train(config)
        if outcome.status == "done":
            return outcome.model_config
        if outcome.status != "paused" or not every or outcome.step % every:
            raise RuntimeError(f"training ended {outcome.status} at step {outcome.step} of "
                               f"{s.train.get('max_steps')} (see {directory / 'log.txt'})")


