"""What a point cost, measured in the point itself: the ablation table's cost columns.

- ``train_images_per_s``: the median over the run's stats.jsonl records of images per second (the
  first record, which holds the start-up, is left out when there are others), on the point's device;
- ``peak_rss_mib`` / ``peak_cuda_mib``: the largest peak the trainer recorded (process RSS; torch's
  allocations on the GPU);
- ``activation_mib``: the bytes one training step of the run's model saves for backward at its batch
  size, counted on the meta device with the pure-PyTorch scan (``analysis.metrics.profile``'s convention,
  the same on every device);
- ``sample_seconds_per_image``: the wall time of the point's final sampling divided by the images it
  drew (``samples/timing.json``, written by the point when it samples).

``device`` names where the times were taken.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from usm.files import read_json


def training_cost(run_dir: str | Path) -> dict:
    from usm.training.run_dir import RunDir

    records = [r for r in RunDir(run_dir).read_stats() if r.get("step") and r.get("steps_per_s")]
    steady = records[1:] or records
    out = {}
    if steady:  # images_seen / step = the global batch
        out["train_images_per_s"] = statistics.median(r["steps_per_s"] * r["images_seen"] / r["step"] for r in steady)
    for key in ("peak_rss_mib", "peak_cuda_mib"):
        values = [r[key] for r in records if key in r]
        if values:
            out[key] = max(values)
    return out


def activation_mib(model: str, model_config: dict, batch: int) -> float:
    from analysis.metrics.profile import model_activation_bytes

    return model_activation_bytes(model, model_config["input_size"], batch, bool(model_config.get("use_checkpoint")),
                                  **model_config) / 2**20


def sampling_record(directory: Path, seconds: float, images: int, device: str) -> None:
    """Record a sampling's time (only when it drew images: a rerun that reused them says nothing)."""
    from usm.files import atomic_write

    if images:
        atomic_write(directory / "samples" / "timing.json",
                     json.dumps({"seconds": seconds, "images": images, "device": device}, indent=2))


def point_cost(directory: Path, model: str, model_config: dict, batch: int, device: str) -> dict:
    """The cost columns of a point (those it can measure), and the device they were taken on."""
    out = {**training_cost(directory), "activation_mib": activation_mib(model, model_config, batch)}
    sampling = directory / "samples" / "timing.json"
    if sampling.exists():
        record = read_json(sampling, "delete it and rerun: the sampling time is then left out of the table")
        out["sample_seconds_per_image"] = record["seconds"] / record["images"]
    return {**out, "device": device}
