"""One grid point, start to finish: train -> sample -> metric -> ``done``, safe to run again.

    >>> from experiments.point import point_status
    >>> point_status("/nonexistent")
    'pending'

A point's directory is ``results/<study>/<point name>``. ``point.json`` is written first and must
match on every later run (a different config in an existing directory is an error). The work runs
under an exclusive ``flock`` on ``<dir>/lock``: a second launcher (or a requeued duplicate) finds
the point busy and leaves it alone, and a dead process releases its lock automatically. Each step
resumes: the trainer from its checkpoint, sampling from the PNGs already written. The trainer and
the sampler are called as functions with typed configs (``usm.training``); their errors name the
problem, and a failure writes ``failed.json`` with that error and the log path. ``done`` is
written only after the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from pathlib import Path

import numpy as np
import submitit
import torch

from analysis.metrics.run_cost import point_cost, sampling_record
from experiments.grid import sample_config, trainer_config
from usm import deprecated
from usm.devices import default_device, device_name
from usm.files import atomic_write, read_json, remove_dead_temps
from usm.locks import is_held, try_lock
from usm.provenance import stamp
from usm.threads import use_cpu_share


class PointBusy(RuntimeError):
    pass


class PointMismatch(ValueError):
    pass


POINT_FIX = "remove the point's folder to run it again"


def point_dir(results: str | Path, point: dict) -> Path:
    return Path(results) / point["study"] / point["name"]


def has_metrics(directory: Path) -> bool:
    try:
        return isinstance(json.loads((directory / "metrics" / "quality.json").read_text()), dict)
    except (OSError, ValueError):
        return False


def point_status(directory: str | Path) -> str:
    """done / running / failed / pending, from the files alone (running = its lock is held). Done
    means ``done`` and a readable ``metrics/quality.json``: a point that lost its metrics is measured
    again (its checkpoint and samples are reused), not shown as done with empty columns."""
    directory = Path(directory)
    if (directory / "done").exists() and has_metrics(directory):
        return "done"
    if is_held(directory / "lock"):
        return "running"
    return "failed" if (directory / "failed.json").exists() else "pending"


WATCHING = ("log_with",)  # settings that change how a point is watched, not what it computes


def comparable(point: dict) -> dict:
    """A point as ``point.json`` records and compares it: without its name, and without the settings
    in WATCHING (a finished study can be rerun with a tracker without being a different study)."""
    kept = deprecated.upgrade({k: v for k, v in point.items() if k != "name"})
    if "settings" in kept:
        kept["settings"] = {k: v for k, v in kept["settings"].items() if k not in WATCHING}
    return kept


def holds_other(directory: Path, point: dict) -> bool:
    """Whether ``directory``'s point.json records another point than ``point``."""
    spec = directory / "point.json"
    return spec.exists() and comparable(read_json(spec, POINT_FIX)) != comparable(point)


def setting_differences(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    """'key: theirs -> ours' for every setting (nested keys dotted) that differs, the seed aside."""
    out = []
    for key in sorted(set(theirs) | set(ours)):
        name = f"{prefix}{key}"
        if name == "train.seed":
            continue
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += setting_differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} there, {b!r} now")
    return out


def check_same_point(directory: Path, point: dict) -> None:
    """PointMismatch, naming the settings that differ, if ``directory`` holds another point."""
    spec = directory / "point.json"
    theirs = comparable(read_json(spec, POINT_FIX)) if spec.exists() else None
    if theirs is not None and theirs != comparable(point):  # holds_other, with point.json read once
        differing = setting_differences(theirs, comparable(point)) or ["its arm, axes or seed"]
        raise PointMismatch(f"{directory} holds a different point ({'; '.join(differing[:4])}"
                            f"{' ...' if len(differing) > 4 else ''}): results are never overwritten; use another "
                            "--results, the same settings, or remove the folder")


def claim(directory: Path, point: dict):
    """Take the point's lock (PointBusy if another process holds it), then check or write point.json.
    The lock comes first, so a process that loses the race leaves nothing behind."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = try_lock(directory / "lock", PointBusy(f"{directory} is being run by another process"))
    try:  # from here on any failure (a damaged or other point.json, a full disk) lets the lock go
        check_same_point(directory, point)
        atomic_write(directory / "point.json", json.dumps(point, indent=2))
    except BaseException:
        handle.close()
        raise
    return handle


def score(s: dict, samples: np.ndarray, sample_dir: Path, swd: bool = True) -> dict:
    """The quality metrics of a set of the point's samples: computed here on SWD-scale data, else FID.
    Learning-curve points leave SWD out (``swd=False``): it takes seconds, and it failed the metric
    validation, so no curve shows it."""
    if s["metric"] == "pixel":
        from analysis.metrics.quality import quality, reference_images

        return quality(reference_images(s["data"], s["resolution"], len(samples)), samples, s["data"], s["resolution"],
                       swd=swd)
    from analysis.metrics.fid import compute_metrics
    return compute_metrics(sample_dir, s["data"], num=len(samples), prc=True, device=default_device())


def measure(directory: Path, s: dict) -> dict:
    if s["metric"] == "profile":
        from analysis.metrics.profile import profile_one

        return {f"{key}@{size}": value for size in s["image_sizes"]
                for key, value in profile_one(s["model"], size, 1, torch.device("cpu"), throughput=False).items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}
    from analysis.metrics.flops import count_registered
    from usm.training.run_dir import RunDir

    # the constructor arguments the run trained with (sizes, conditioning, --model-arg), as recorded
    model_config = RunDir(directory).read_config()["derived"]["model_config"]
    flops = count_registered(s["model"], **model_config)
    final = directory / "samples" / "final"
    samples = np.load(final / "samples.npz")["images"]
    out = {"gflops": flops.gflops, "params": flops.params, "num_samples": len(samples),
           **point_cost(directory, s["model"], model_config, s["train"]["batch_size"],
                        device_name(torch.device(default_device())))}
    out.update(score(s, samples, final))
    if s["metric"] == "pixel":  # how much of each score is due to which samples were drawn
        from analysis.metrics.quality import bootstrap, reference_images

        spread = bootstrap(reference_images(s["data"], s["resolution"], len(samples)), samples, s["data"],
                           s["resolution"])
        out.update({f"{name}_sampling_std": value for name, value in spread.items()})
        if s.get("eval_every"):  # the curve's last point: the first eval_samples final samples, which are
            # exactly the images an evaluation would have drawn (image i's noise derives from (seed, i))
            first = samples[:s["eval_samples"]]
            write_curve_point(directory, s, s["train"]["max_steps"], score(s, first, final, swd=False), first)
    return out


def curve_file(directory: Path, step: int) -> Path:
    return directory / "metrics" / "curve" / f"step-{step:09d}.json"


def write_curve_point(directory: Path, s: dict, step: int, metrics: dict, samples: np.ndarray) -> None:
    """Record one evaluation of the learning curve, and send it (and 16 of its samples) to the run's
    trackers when the study has one (``settings.log_with``)."""
    from usm.training.trackers import log_evaluation

    path = curve_file(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"step": step, "images_seen": step * s["train"]["batch_size"], "num_samples": s["eval_samples"],
              **metrics}
    atomic_write(path, json.dumps(record, indent=2))
    log_evaluation(s.get("log_with", "none"), directory, step, metrics, samples[:16],
                   s["train"].get("mixed_precision", "no"))


def evaluate_during_training(directory: Path, s: dict) -> None:
    """Sample and score the newest checkpoint when it sits at an evaluation step that has no curve
    point yet (``samples/curve/step-N``, ``metrics/curve/step-N.json``): the learning curve. Only
    SWD-scale data is scored here; FID-scale curves keep their samples for a later FID."""
    from usm.training import generate
    from usm.training.checkpoint import PATTERN, checkpoint_path, list_checkpoints
    from usm.training.run_dir import RunDir

    checkpoints = RunDir(directory).checkpoints
    found = list_checkpoints(checkpoints)
    step = int(PATTERN.match(found[-1].name).group(1)) if found else 0
    if not step or step % s["eval_every"] or step >= s["train"]["max_steps"] or curve_file(directory, step).exists():
        return
    out = directory / "samples" / "curve" / f"step-{step:09d}"
    generate(dataclasses.replace(sample_config(s, directory), target=str(checkpoint_path(checkpoints, step)),
                                 num=s["eval_samples"], out=str(out)))
    samples = np.load(out / "samples.npz")["images"]
    write_curve_point(directory, s, step, score(s, samples, out, swd=False) if s["metric"] == "pixel" else {}, samples)


def train_point(directory: Path, settings: dict, evaluate: bool = True) -> None:
    """Train the point's run to its last step; with a learning curve (``eval_every``) the trainer
    pauses at every evaluation step and rank 0 (``evaluate``) samples and scores it there. Any other
    outcome than "done" or such a pause (a time budget, a divergence) is an error, as before."""
    from usm.training import train

    config, every = trainer_config(settings, directory), settings.get("eval_every")
    while True:
        if every and evaluate:
            evaluate_during_training(directory, settings)
        outcome = train(config)
        if outcome.status == "done":
            return
        if outcome.status != "paused" or not every or outcome.step % every:
            raise RuntimeError(f"training ended {outcome.status} at step {outcome.step} of "
                               f"{settings['train'].get('max_steps')} (see {directory / 'log.txt'})")


def run_point(results: str, point: dict, rank: int = 0) -> str:
    """Run (or finish) one point. Returns its final status. With several tasks (one per GPU), every
    rank trains (DDP); rank 0 alone holds the point's lock, samples, measures and marks it done."""
    from usm.training import generate

    directory = point_dir(results, point)
    if point_status(directory) == "done":
        return "done"
    s = point["settings"]
    if rank > 0:
        if s["metric"] != "profile":
            train_point(directory, s, evaluate=False)
        return "worker"
    handle = claim(directory, comparable(point))
    try:
        (directory / "failed.json").unlink(missing_ok=True)
        record_code(directory, point["study"])
        for folder in (directory, directory / "samples", directory / "metrics", directory / "metrics" / "curve"):
            remove_dead_temps(folder)  # of this point's writers that were killed (the trainer's and sampler's
            # own folders are cleaned by them)
        if s["metric"] != "profile":
            train_point(directory, s)
            sampling = sample_config(s, directory)
            started = time.monotonic()
            drawn = generate(sampling)
            seconds = time.monotonic() - started
            sampling_record(directory, seconds, drawn.new, device_name(torch.device(sampling.device)))
        metrics = measure(directory, s)
        broken = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
        if broken:  # a table would average it away or show it as a number
            raise ValueError(f"the point's {', '.join(broken[:3])} came out non-finite: it is failed, not done; "
                             "look at its samples and log")
        (directory / "metrics").mkdir(exist_ok=True)
        atomic_write(directory / "metrics" / "quality.json", json.dumps(metrics, indent=2))
        atomic_write(directory / "done", "")
        return "done"
    except Exception as exc:
        atomic_write(directory / "failed.json", json.dumps({
            "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
            "log": str(directory / "log.txt"), "job_log": job_log()}, indent=2))
        raise
    finally:
        handle.close()


def record_code(directory: Path, study: str) -> None:
    """Add the code this invocation runs to the point's ``code.txt`` (one stamp a line, each once): a
    point resumed on changed code names every version that trained or scored it."""
    path = directory / "code.txt"
    seen = path.read_text().split() if path.exists() else []
    now = stamp(f"study:{study}")
    if now not in seen:
        atomic_write(path, "\n".join([*seen, now]) + "\n")


def job_log() -> str:
    """The submitit job's stderr file, when running as a submitit job."""
    try:
        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # not inside a submitit job, or an environment submitit half-recognises:
        return ""  # this runs while reporting a failure, so it must never raise itself


class PointJob(submitit.helpers.Checkpointable):
    """The job submitit runs; on timeout or preemption it is requeued, and the rerun resumes."""

    def __call__(self, results: str, point: dict) -> str:
        rank, world = 0, 1
        try:
            environment = submitit.JobEnvironment()
            rank, world = environment.global_rank, environment.num_tasks
        except RuntimeError:  # called outside a submitit job
            pass
        use_cpu_share()  # this job's CPUs only: the local launcher's USM_CPUS, or SLURM's allocation
        if world > 1:  # one task per GPU: torch.distributed (env://) and accelerate read these variables
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        try:
            return run_point(results, point, rank)
        except PointBusy:
            return "busy"
