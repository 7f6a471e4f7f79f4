"""Gather a study's run directories into one pandas DataFrame: one row per run.

    >>> from analysis.report.collect import collect_study
    >>> collect_study("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FileNotFoundError: ...

A study is a folder of run directories (``results/<study>/<run>/``), each as the trainer writes it
(``config.json``, ``stats.jsonl``, ``checkpoints/``) plus what the experiment launcher adds:
``point.json`` (``{"arm": ..., "axes": {...}, "seed": ...}``), ``metrics/*.json`` (flat objects of
numbers, e.g. ``{"swd": 14.2}``) and an empty ``done`` file once the metrics are written. Rows of
runs without ``done`` are kept with ``status`` = ``incomplete`` (and why), never dropped.
``learning_curves`` reads the evaluations made while a run trained (``metrics/curve/step-N.json``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from usm import deprecated
from usm.files import point_name, read_json
from usm.provenance import UNRECORDED
from usm.training.run_dir import RunDir

log = logging.getLogger(__name__)
REMEASURE = "delete it and rerun the study's command: the point is measured again from its checkpoint"


def _numbers(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_run(path: Path) -> dict:
    run = RunDir(path)
    point = deprecated.upgrade(read_json(path / "point.json", REMEASURE)) if (path / "point.json").exists() else {}
    config = run.read_config() or {}
    stats = run.read_stats()
    identity = config.get("identity", {})
    max_steps = config.get("runtime", {}).get("max_steps")
    model = identity.get("model", {}).get("model")
    row = {"run": path.name, "order": point.get("order"), "arm": point.get("arm", model or path.name),
           "seed": point.get("seed", identity.get("train", {}).get("seed")),
           "model": model, "data": point.get("settings", {}).get("data", identity.get("data", {}).get("data")),
           **{f"axis.{k}": v for k, v in point.get("axes", {}).items()},
           "step": stats[-1]["step"] if stats else 0, "max_steps": max_steps,
           "final_loss": float(pd.Series([s["loss"] for s in stats[-5:]]).mean()) if stats else None,
           "code": " ".join(code_stamps(path, point.get("study")))}
    for metric_file in sorted((path / "metrics").glob("*.json")) if (path / "metrics").is_dir() else []:
        record = read_json(metric_file, REMEASURE)
        row.update(_numbers(record))
        if isinstance(record.get("device"), str):  # where the cost columns were measured
            row["device"] = record["device"]
    if (path / "done").exists() and (not point or (path / "metrics" / "quality.json").exists()):
        row["status"], row["why"] = "done", ""
    else:
        row["status"] = "incomplete"
        row["why"] = ("not started" if not stats else f"training ({row['step']}/{max_steps} steps)"
                      if max_steps and row["step"] < max_steps else "metrics missing")
    return row


def code_stamps(path: Path, study: str | None) -> list[str]:
    """The code stamps a point ran under (its ``code.txt``); a point from before points recorded them
    says ``study:NAME@unrecorded``."""
    if (path / "code.txt").exists():
        return (path / "code.txt").read_text().split()
    return [f"study:{study or path.parent.name}@{UNRECORDED}"]


def stored_point(path: Path) -> dict | None:
    """The point ``path/point.json`` records, or None without one or with a damaged one."""
    try:
        point = json.loads((path / "point.json").read_text())
        point_name(deprecated.arm(point["arm"]), point["seed"])
        return point
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def stray(path: Path, warn: bool = True) -> bool:
    """Whether a folder inside a study holds a point that is not its own (a copy such as
    'recipe-s0 (copy)', or a renamed folder): warned about and left out, since it would count its point
    twice. A folder named after its arm's old or new spelling is its own. Folders without point.json
    (runs trained by hand) are kept as they are; a damaged point.json is named by ``read_run``."""
    point = stored_point(path)
    if point is None:
        return False
    names = {point_name(arm, point["seed"]) for arm in (point["arm"], deprecated.arm(point["arm"]))}
    if path.name in names:
        return False
    if warn:
        log.warning("%s holds point %s (a copy or a renamed folder?): left out of the study's tables and launches",
                    path, point_name(deprecated.arm(point["arm"]), point["seed"]))
    return True


def collect_study(study_dir: str | Path) -> pd.DataFrame:
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study folder {study_dir} does not exist: run the study first "
                                "(python experiments/run.py --grid NAME) or pass --results")
    runs = sorted(p for p in study_dir.iterdir()
                  if p.is_dir() and ((p / "config.json").exists() or (p / "point.json").exists()) and not stray(p))
    if not runs:
        raise FileNotFoundError(f"{study_dir} holds no run directories (folders with config.json or point.json)")
    rows = [read_run(p) for p in runs]  # in the grid's order when the launcher recorded it
    rows.sort(key=lambda r: (r["order"] is None, r["order"] if r["order"] is not None else 0, r["run"]))
    return pd.DataFrame(rows)


def loss_curves(study_dir: str | Path) -> pd.DataFrame:
    """Long table (run, arm, seed, step, loss) of every run's stats.jsonl."""
    rows = []
    for path in sorted(Path(study_dir).iterdir()):
        if not (path / "stats.jsonl").exists() or stray(path):
            continue
        info = read_run(path)
        rows += [{"run": info["run"], "arm": info["arm"], "seed": info["seed"], "step": s["step"], "loss": s["loss"]}
                 for s in RunDir(path).read_stats()]
    return pd.DataFrame(rows, columns=["run", "arm", "seed", "step", "loss"])


def training_clock(stats: list[dict]):
    """step -> seconds the run spent training up to it, from its stats lines (each logs the rate of the
    steps since the line before): evaluations, sampling and pauses between invocations are not in it."""
    steps, seconds, total, last = [0], [0.0], 0.0, 0
    for record in stats:
        if record["step"] > last and record.get("steps_per_s"):
            total += (record["step"] - last) / record["steps_per_s"]
            last = record["step"]
            steps.append(last)
            seconds.append(total)

    def at(step: int) -> float | None:
        if step > steps[-1]:
            return None  # not logged yet
        return seconds[max(i for i, s in enumerate(steps) if s <= step)]
    return at


def learning_curves(study_dir: str | Path) -> pd.DataFrame:
    """Long table (run, arm, seed, step, images_seen, num_samples, metrics..., train_seconds) of every
    run's learning-curve evaluations; empty when the study evaluated only at the end.
    ``train_seconds``: the training time up to that step (``training_clock``)."""
    rows = []
    for path in sorted(Path(study_dir).iterdir()):
        files = sorted((path / "metrics" / "curve").glob("step-*.json")) if path.is_dir() and not stray(path) else []
        if not files:
            continue
        info = read_run(path)
        clock = training_clock(RunDir(path).read_stats())
        for f in files:
            record = _numbers(read_json(f, REMEASURE))
            rows.append({"run": info["run"], "arm": info["arm"], "seed": info["seed"], "order": info["order"],
                         **record, "train_seconds": clock(record.get("step", 0))})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["order"] = frame["order"].fillna(-1)
    frame["train_seconds"] = pd.to_numeric(frame["train_seconds"])  # None (no rates logged) -> NaN
    return frame.sort_values(["order", "run", "step"], kind="stable").drop(columns="order").reset_index(drop=True)


def last_launch(study_dir: str | Path) -> dict | None:
    """The latest local launch's wall times (``launches.jsonl``, appended by the launcher), or None."""
    path = Path(study_dir) / "launches.jsonl"
    if not path.exists():
        return None
    for line in reversed(path.read_text().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # a torn line (a kill during its append): the launch before it
            continue
    return None
