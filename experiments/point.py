"""One grid point's lifecycle: its folder, lock, ``point.json``, status, code record and outcome
(``done`` or ``failed.json``); the work itself is ``experiments.pipeline`` (train -> sample -> measure).

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

import json
import math
import traceback
from pathlib import Path

import submitit

from experiments import pipeline
from experiments.settings import Settings
from usm import deprecated
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
    if isinstance(kept.get("arm"), str):
        kept["arm"] = deprecated.arm(kept["arm"])
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
    theirs, ours = (comparable(read_json(spec, POINT_FIX)) if spec.exists() else None), comparable(point)
    if theirs is not None and theirs != ours:  # holds_other, with point.json read once
        differing = setting_differences(theirs, ours) or ["its arm, axes or seed"]
        raise PointMismatch(f"{directory} holds a different point ({'; '.join(differing[:4])}"
                            f"{' ...' if len(differing) > 4 else ''}): results are never overwritten; use another "
                            "--results, the same settings, or remove the folder")


def take(directory: Path, point: dict):
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


def run_point(results: str, point: dict, rank: int = 0) -> str:
    """Run (or finish) one point. Returns its final status. With several tasks (one per GPU), every
    rank trains (DDP); rank 0 alone holds the point's lock, samples, measures and marks it done."""
    directory = point_dir(results, point)
    if point_status(directory) == "done":
        return "done"
    s = Settings.from_dict(point["settings"])
    if rank > 0:
        pipeline.train_point(directory, s, evaluate=False)
        return "worker"
    handle = take(directory, comparable(point))
    try:
        (directory / "failed.json").unlink(missing_ok=True)
        record_code(directory, point["study"])
        for folder in (directory, directory / "samples", directory / "metrics", directory / "metrics" / "curve"):
            remove_dead_temps(folder)  # of this point's writers that were killed (the trainer's and sampler's
            # own folders are cleaned by them)
        model_config = pipeline.produce(directory, s)
        metrics = pipeline.measure(directory, s, model_config)
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
