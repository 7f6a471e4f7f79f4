"""Experiment trackers through accelerate: TensorBoard, Weights & Biases, MLflow, Aim.

    >>> from usm.training.trackers import CHOICES, hyperparameters
    >>> CHOICES
    ('none', 'tensorboard', 'wandb', 'mlflow', 'aim', 'all')
    >>> hyperparameters({"identity": {"train": {"lr": 1e-4, "timesteps": "logit_normal"}, "model": {"model_args": {}}}})
    {'identity.train.lr': 0.0001, 'identity.train.timesteps': 'logit_normal'}

``--log-with NAME`` (a study: ``--set log_with=NAME``) hands the trainer's ``stats.jsonl``
records (loss, learning rate, gradient norm, speed, memory) to the tracker at the same steps, with
the run's resolved config as its hyper-parameters. Files go to ``RUN/trackers/``. Weights & Biases
runs offline unless ``WANDB_MODE`` says otherwise: nothing here makes a network call by itself. The
trackers' packages are optional (the ``tracking`` extra); asking for one that is not installed is
an error before the run starts.
"""

from __future__ import annotations

import os
from pathlib import Path

TRACKERS = ("tensorboard", "wandb", "mlflow", "aim")
CHOICES = ("none", *TRACKERS, "all")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim"}


class TrackerUnavailable(ValueError):
    pass


def _available(name: str) -> bool:
    from accelerate.utils import imports

    return getattr(imports, f"is_{name}_available")()


def check(log_with: str) -> None:
    """TrackerUnavailable (one line, naming the fix) unless ``log_with`` can run here."""
    if log_with not in CHOICES:
        raise TrackerUnavailable(f"--log-with {log_with}: not a tracker; valid: {', '.join(CHOICES)}")
    wanted = TRACKERS if log_with == "all" else () if log_with == "none" else (log_with,)
    present = [name for name in wanted if _available(name)]
    if log_with == "all" and not present:
        raise TrackerUnavailable("--log-with all: no tracker is installed; pip install -e \".[tracking]\" "
                                 "(TensorBoard, Weights & Biases, MLflow) or any one of them")
    if log_with not in ("all", "none") and not present:
        raise TrackerUnavailable(f"--log-with {log_with}: the {_PACKAGES[log_with]} package is not installed; "
                                 f"pip install {_PACKAGES[log_with]} (or pip install -e \".[tracking]\")")


def accelerator_kwargs(log_with: str, run_dir: str | Path) -> dict:
    """What ``Accelerator(...)`` takes for ``log_with``: nothing for none."""
    if log_with == "none":
        return {}
    os.environ.setdefault("WANDB_MODE", "offline")  # wandb's default is online: never here unless asked
    return {"log_with": log_with, "project_dir": str(Path(run_dir) / "trackers")}


def hyperparameters(resolved: dict, prefix: str = "") -> dict:
    """The resolved config flattened to the scalar values trackers take (``a.b.c``: value); lists
    become strings, None and empty sections are left out."""
    out = {}
    for key, value in resolved.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(hyperparameters(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = str(list(value))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


def log_evaluation(log_with: str, run_dir: str | Path, step: int, metrics: dict, images=None,
                   mixed_precision: str = "no") -> None:
    """A learning-curve evaluation (its quality numbers as ``eval/NAME``, and ``images``, uint8
    (N, H, W, C), as ``eval/samples`` where the tracker takes images) to the run's trackers at the
    step it was made. The study point calls it between the trainer's invocations."""
    if log_with == "none":
        return
    import numpy as np
    from accelerate import Accelerator

    from usm.devices import default_device

    accelerator = Accelerator(cpu=default_device() == "cpu", mixed_precision=mixed_precision,
                              **accelerator_kwargs(log_with, run_dir))
    accelerator.init_trackers(Path(run_dir).name)
    accelerator.log({f"eval/{k}": v for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)
    if images is not None and len(images):
        for tracker in accelerator.trackers:
            if hasattr(tracker, "log_images"):  # TensorBoard takes (N, C, H, W); the others a list of images
                batch = np.moveaxis(images, -1, 1) if tracker.name == "tensorboard" else list(images)
                tracker.log_images({"eval/samples": batch}, step=step)
    accelerator.end_training()


def start(accelerator, log_with: str, run_name: str, resolved: dict) -> None:
    if log_with != "none":
        accelerator.init_trackers(run_name, config=hyperparameters(resolved))


def log(accelerator, log_with: str, record: dict) -> None:
    if log_with != "none":
        accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def end(accelerator, log_with: str) -> None:
    if log_with != "none":
        accelerator.end_training()
