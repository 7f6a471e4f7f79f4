"""Steps/s of the real trainer on a study point's data path: what an arm's hours are made of.

    python -m analysis trainer-rate --grid ablations --scale mini --steps 20

The microbenchmark of ``analysis.bench.gpu_check`` times forward, backward and AdamW on a fixed batch;
a study point runs ``usm.training.train``: the data loader, the latent cache (one VAE pass per image,
shared by the study's points), the EMA, gradient clipping, the stop checks and the checkpoints. This
runs exactly that ``train(Config)`` a point would -- its model, batch, precision, recipe and the
study's latent-cache path (``Settings.trainer_config``) -- for a few steps, and reads the
rate off ``stats.jsonl`` after a warm-up, the time the cache takes to build measured apart.

Off-line machines have neither the point's dataset nor the SD-VAE weights, so by default it draws a
folder of synthetic images at the point's resolution and builds a VAE of SD-VAE's architecture with
random weights (``sd_vae_shaped``): encoding costs what the real one costs, the images mean nothing.
``--data`` and ``--vae`` take the real ones where they exist. The record says which it used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

# SD-VAE's (stabilityai/sd-vae-ft-ema) architecture: diffusers AutoencoderKL with these settings.
SD_VAE_ARCHITECTURE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                           block_out_channels=(128, 256, 512, 512),
                           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def sd_vae_shaped(folder: Path, **architecture) -> Path:
    """A diffusers AutoencoderKL of SD-VAE's architecture (or ``architecture``), random weights,
    saved to ``folder``: the trainer's ``--latent FOLDER`` loads it like the real one."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**{**SD_VAE_ARCHITECTURE, **architecture}).save_pretrained(folder)
    return folder


def synthetic_images(folder: Path, count: int, resolution: int) -> Path:
    """``count`` PNGs of ``resolution`` px: coloured rectangles on noise (content is irrelevant here)."""
    import numpy as np
    from PIL import Image

    from usm.files import atomic_save

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)
        top, left = rng.integers(0, resolution // 2, 2)
        image[top: top + resolution // 3, left: left + resolution // 3] = rng.integers(0, 256, 3)
        atomic_save(folder / f"{i:05d}.png", Image.fromarray(image).save, format="PNG")
    return folder


def measure(settings, workdir: Path, steps: int, warmup: int, data: str | None = None,
            vae: str | None = None, images: int | None = None, **train_fields) -> dict:
    """Train a point with ``settings`` in ``workdir`` for about ``warmup + steps`` steps; its steps/s.
    The trainer logs (a host sync and a stats line) at the study's ``log_every``, or every ``steps``
    steps when that is fewer, so the timing pays what a study pays, not a sync every step: the first
    log window holds the warm-up (at least ``warmup`` steps), the rate is the median of the others.
    ``images``: how many synthetic images to draw (default: two batches' worth, at least 64)."""
    from usm.data.embedded import EMBEDDED
    from usm.training import train

    window = max(1, min(settings.train.get("log_every", steps), steps))
    warmup = window * math.ceil(warmup / window)
    total = warmup + window * math.ceil(steps / window)
    settings = dataclasses.replace(settings, eval_every=None, train={
        **settings.train, "max_steps": total, "log_every": window, "ckpt_every": total, **train_fields})
    synthetic_data = data is None and settings.data not in EMBEDDED
    images = images or max(64, 2 * settings.train["batch_size"])
    if data is not None or synthetic_data:
        settings = settings.set("data", data or str(synthetic_images(workdir / "images", images, settings.resolution)))
    synthetic_vae = settings.latent != "none" and vae is None
    if settings.latent != "none":
        settings = settings.set("latent", vae or str(sd_vae_shaped(workdir / "vae")))
    config = settings.trainer_config(workdir / "study" / "point")
    started = time.monotonic()
    if config.data.latent_cache:  # build the cache first, so that its time is not the steps'

        from usm.data.datasets import open_dataset
        from usm.data.latents import build_latent_cache, load_vae
        from usm.devices import default_device

        device = default_device()
        build_latent_cache(open_dataset(config.data.data, config.data.resolution),
                           load_vae(config.data.latent, device), config.data.latent_cache)
    cache_seconds = time.monotonic() - started
    outcome = train(config)
    stats = [json.loads(line) for line in (workdir / "study" / "point" / "stats.jsonl").read_text().splitlines()]
    rates = [s["steps_per_s"] for s in stats if s["step"] > warmup]
    rate = statistics.median(rates) if rates else None
    return {"model": settings.model, "batch": config.train.batch_size, "resolution": settings.resolution,
            "latent": "SD-VAE architecture, random weights" if synthetic_vae else settings.latent,
            "data": f"{images} synthetic images" if synthetic_data else settings.data,
            "mixed_precision": config.train.mixed_precision, "steps_timed": window * len(rates), "warmup_steps": warmup,
            "log_every": window,
            "trainer_steps_per_s": rate, "latent_cache_seconds": round(cache_seconds, 2), "status": outcome.status}


def first_point(grid, scale: str):
    """The grid's first point at ``scale``, its datasets' paths stood in for by empty folders (the
    measurement draws its own images; the names only have to resolve)."""
    from usm.data.embedded import EMBEDDED

    names = grid.dataset_names(grid.scales[scale])
    stand_ins = {f"data.{name}": tempfile.mkdtemp() for name in sorted(names - set(EMBEDDED))}
    return grid.points(scale, sets=stand_ins)[0]


def main(argv=None) -> int:
    from experiments.grids import GRIDS

    parser = argparse.ArgumentParser(prog="python -m analysis trainer-rate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="ablations", choices=sorted(GRIDS))
    parser.add_argument("--scale", default="mini")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", help="the point's image folder (default: synthetic images)")
    parser.add_argument("--vae", help="a local SD-VAE folder (default: SD-VAE's architecture, random weights)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    grid = GRIDS[args.grid]
    if args.scale not in grid.scales:
        print(f"error: grid {args.grid} has no scale {args.scale!r}; valid: {sorted(grid.scales)}", file=sys.stderr)
        return 2
    point = first_point(grid, args.scale)
    with tempfile.TemporaryDirectory() as workdir:
        record = measure(point.settings, Path(workdir), args.steps, args.warmup, args.data, args.vae)
    max_steps = point.settings.train["max_steps"]
    if record["trainer_steps_per_s"]:
        record["hours_per_arm"] = max_steps / record["trainer_steps_per_s"] / 3600
    print(json.dumps(record, indent=2) if args.json else
          f"{record['model']} batch {record['batch']}: {record['trainer_steps_per_s']:.2f} steps/s through the "
          f"trainer ({record['data']}, latent {record['latent']}); {max_steps:,} steps: "
          f"{record.get('hours_per_arm', float('nan')):.2f} h per arm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
