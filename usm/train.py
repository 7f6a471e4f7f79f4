"""The one trainer: rectified flow for every registered model, on CPU, one GPU or many.

    python -m usm.train --model USM-T/2 --data shapes --run-dir runs/usm-t --max-steps 200 \
        --batch-size 8 --seed 0 --ckpt-every 50
    python -m usm.train ... --dry-run                       # print the resolved config and exit
    torchrun --nproc_per_node 2 -m usm.train ...            # several processes (DDP; gloo on CPU)

Run the same command again to resume: the trainer loads the newest checkpoint of ``--run-dir``
that passes its checksum (model, EMA, optimizer, scheduler, step, RNG states) and goes on. Every
random draw of a step -- which images, which flips, the noise, the timesteps, label dropout -- is
derived from (seed, rank, step), so on CPU a run killed at any moment and restarted ends with
weights bitwise identical to an uninterrupted one (tests/test_train.py kills it with SIGKILL).

An invocation ends at ``--max-steps``, or early and cleanly (with a checkpoint) at
``--time-budget`` seconds or ``--max-steps-per-invocation`` steps, so a SLURM job can requeue. A
non-finite loss stops the run (exit code 3) without saving the broken state: the last good
checkpoint stays the newest. An invocation that ends early exits with code 4 (``EXIT_PAUSED``), so
a batch script can requeue itself (``slurm/train_one.sbatch``); a finished run exits with 0.

Fixed relative to the reference trainer (DESIGN.md section 5): per-rank seeds differ; the EMA
copy is never wrapped for DDP; unused parameters do not break DDP; gradients are clipped before
the optimizer step; resume takes the step and data position from the checkpoint itself.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from usm.checkpoint import latest_checkpoint, save_checkpoint
from usm.data.datasets import ImageDataset, StepBatches, open_dataset
from usm.data.folder import DataError
from usm.ema import make_ema, update_ema
from usm.rectified_flow import training_loss
from usm.runs import ConfigMismatch, RunDir, model_from_config
from usm.seeding import derive_seed, generator
from usm.threads import use_cpu_share
from usm.train_config import Config, parse_args

log = logging.getLogger("usm.train")
EXIT_DIVERGED = 3
EXIT_PAUSED = 4  # the invocation ended before max_steps (time budget / per-invocation limit): rerun to resume


@dataclass
class Outcome:
    status: str  # "done" (max_steps reached), "paused" (invocation limit), "diverged"
    step: int


class CachedLatents(torch.utils.data.Dataset):
    """A dataset whose images are replaced by their cached latents (image or mirror)."""

    def __init__(self, dataset: ImageDataset, latents: np.ndarray):
        self.dataset, self.latents = dataset, latents

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, flip = item
        return {"x": torch.from_numpy(np.array(self.latents[index, int(flip)])), **self.dataset.extras(index)}


def setup_logging(run: RunDir, is_main: bool, to_file: bool) -> None:
    handlers = [logging.StreamHandler(sys.stderr)]
    if is_main and to_file:
        run.path.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run.log_path))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def resolve(cfg: Config, dataset: ImageDataset, vae=None) -> dict:
    """The resolved config: identity (what makes the run), runtime settings, and derived sizes."""
    data = cfg.data
    if data.cond == "class" and dataset.num_classes == 0:
        raise DataError(f"--cond class needs labels, but {data.data} has no class sub-folders "
                        "(put each class's images in its own sub-folder)")
    if data.cond == "text" and dataset.context is None:
        raise DataError("--cond text needs --context: a .npy of precomputed tokens (num_images, tokens, d_context)")
    if vae is not None:
        from usm.data.latents import latent_shape

        channels, side = latent_shape(vae, data.resolution)
    else:
        channels, side = dataset.channels, data.resolution
    derived = dict(in_channels=channels, input_size=side,
                   num_classes=dataset.num_classes if data.cond == "class" else 0,
                   d_context=int(dataset.context.shape[2]) if data.cond == "text" else 0,
                   dataset_size=len(dataset), class_names=dataset.class_names if data.cond == "class" else [])
    return {"identity": cfg.identity(), "runtime": cfg.to_dict()["run"] | {"max_steps": cfg.train.max_steps},
            "derived": derived}


def make_batch_cond(batch: dict, cond: str, device):
    if cond == "class":
        return batch["label"].to(device)
    if cond == "text":
        return batch["context"].to(device)
    return None


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if torch.cuda.is_available() and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def train(cfg: Config) -> Outcome:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # cpu=True off-GPU: without it accelerate does not set up multi-process CPU runs (torchrun + gloo).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.train.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    run = RunDir(cfg.run.run_dir)
    setup_logging(run, accelerator.is_main_process, to_file=not cfg.run.dry_run)

    dataset = open_dataset(cfg.data.data, cfg.data.resolution, cfg.data.context, cfg.data.skip_bad_images)
    if dataset.skipped:
        log.warning("skipped %d unusable images of %s (--skip-bad-images)", dataset.skipped, cfg.data.data)
    vae = None
    if cfg.data.latent != "none":
        from usm.data.latents import load_vae

        vae = load_vae(cfg.data.latent, device)
    resolved = resolve(cfg, dataset, vae)
    if cfg.run.dry_run:
        print(json.dumps(resolved, indent=2))
        return Outcome("dry-run", 0)
    if accelerator.is_main_process:
        run.claim(resolved)
    accelerator.wait_for_everyone()

    source = dataset
    if vae is not None and cfg.data.latent_cache:
        from usm.data.latents import build_latent_cache

        if accelerator.is_main_process:  # encode once, then every rank reads the file
            build_latent_cache(dataset, vae, cfg.data.latent_cache, progress=lambda it: tqdm(it, desc="latents"))
        accelerator.wait_for_everyone()
        source = CachedLatents(dataset, build_latent_cache(dataset, vae, cfg.data.latent_cache))
        vae = None  # batches already hold latents

    torch.manual_seed(derive_seed(cfg.train.seed, "init"))  # identical initial weights on every rank
    model = model_from_config(resolved)
    ema = make_ema(model).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    warmup = max(cfg.train.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)

    step = 0
    found = latest_checkpoint(run.checkpoints)
    if found is not None:
        step, state, path = found
        model.load_state_dict(state["model"])  # strict: a mismatch is an error, never a silent partial load
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        dropped = run.drop_stats_after(step) if accelerator.is_main_process else 0
        log.info("resumed from %s (step %d)%s", path, step, f"; dropped {dropped} stats lines after it" if dropped else "")
    else:
        log.info("starting %s: %s parameters", resolved["identity"]["model"]["model"],
                 f"{sum(p.numel() for p in model.parameters()):,}")
    model, optimizer = accelerator.prepare(model, optimizer)

    def checkpoint(at_step: int) -> None:
        states = [rng_state()]
        if world > 1:  # every rank's generators, so each resumes its own
            states = [None] * world
            torch.distributed.all_gather_object(states, rng_state())
        if accelerator.is_main_process:
            save_checkpoint(run.checkpoints, at_step, {
                "step": at_step, "model": accelerator.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": states,
                "config": resolved}, keep=cfg.run.keep)
        accelerator.wait_for_everyone()

    end = cfg.train.max_steps
    if cfg.run.max_steps_per_invocation:
        end = min(end, step + cfg.run.max_steps_per_invocation)
    if step >= end:
        log.info("nothing to do: the run is at step %d of %d", step, cfg.train.max_steps)
        return Outcome("done" if step >= cfg.train.max_steps else "paused", step)

    order = StepBatches(len(dataset), cfg.train.batch_size, cfg.train.seed, world, rank)
    loader = torch.utils.data.DataLoader(source, batch_sampler=order.sampler(step, end),
                                         num_workers=cfg.run.num_workers)
    started, last_log, last_log_step, last_saved = time.monotonic(), time.monotonic(), step, step
    bar = tqdm(total=cfg.train.max_steps, initial=step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True, mininterval=1.0)
    status = "done"
    model.train()
    for batch in loader:
        torch.manual_seed(derive_seed(cfg.train.seed, "step", rank, step))  # label dropout and the like
        x = batch["x"].to(device)
        if vae is not None:
            from usm.data.latents import encode

            x = encode(vae, x).float()
        cond = make_batch_cond(batch, cfg.data.cond, device)
        noise_gen = generator(cfg.train.seed, "noise", rank, step, device=device)
        loss = training_loss(model, x, cond, cfg.train.timesteps, noise_gen)
        if not torch.isfinite(loss):
            log.error("non-finite loss %s at step %d: stopping without saving; the newest checkpoint (step %d) "
                      "is the last good state. Lower --lr or enable --grad-clip, then rerun to resume from it.",
                      loss.item(), step, last_saved)
            status = "diverged"
            break
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(trainable, cfg.train.grad_clip) if cfg.train.grad_clip > 0 else \
            torch.sqrt(sum(p.grad.float().square().sum() for p in trainable if p.grad is not None))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        update_ema(ema, accelerator.unwrap_model(model), cfg.train.ema_decay)
        step += 1
        bar.update(1)

        if step % cfg.run.log_every == 0 or step == end:
            mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
            now = time.monotonic()
            record = {"step": step, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                      "grad_norm": float(grad_norm), "steps_per_s": (step - last_log_step) / max(now - last_log, 1e-9),
                      "images_seen": step * cfg.train.batch_size * world}
            if accelerator.is_main_process:
                run.append_stats(record)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            last_log, last_log_step = now, step
        out_of_time = cfg.run.time_budget is not None and time.monotonic() - started > cfg.run.time_budget
        if step % cfg.run.ckpt_every == 0 or step == end or out_of_time:
            checkpoint(step)
            last_saved = step
        if out_of_time and step < end:
            status = "paused"
            log.info("time budget of %.0f s used at step %d: checkpoint saved, rerun to resume", cfg.run.time_budget, step)
            break
    bar.close()
    if status == "done" and step < cfg.train.max_steps:
        status = "paused"
        log.info("invocation limit reached at step %d of %d: rerun to resume", step, cfg.train.max_steps)
    if status == "done":
        log.info("finished: step %d", step)
    return Outcome(status, step)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    use_cpu_share()
    try:
        outcome = train(cfg)
    except (DataError, ConfigMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from usm.data.latents import VAEUnavailable

        if isinstance(exc, VAEUnavailable):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    return {"diverged": EXIT_DIVERGED, "paused": EXIT_PAUSED}.get(outcome.status, 0)


if __name__ == "__main__":
    sys.exit(main())
