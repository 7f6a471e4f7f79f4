"""The one trainer: rectified flow for every registered model, on CPU, one GPU or many.

    >>> import tempfile
    >>> from usm.training import Config, train
    >>> cfg = Config.from_flat({"model": "USM-T/2", "data": "shapes", "run_dir": tempfile.mkdtemp(),
    ...                         "max_steps": 2, "batch_size": 2, "log_every": 1})
    >>> train(cfg)
    Outcome(status='done', step=2)

``train(cfg)`` reads top to bottom in four stages: ``setup`` (devices, data, the resolved config
and the model, all checked before anything is written), ``resume`` (the newest checkpoint that
verifies), ``run_steps`` (the loop) and the outcome. Run it again on the same run directory to
resume: every random draw of a step -- which images, which flips, the noise, the timesteps, label
dropout -- is derived from (seed, rank, step), so on CPU a run killed at any moment and restarted
ends with weights bitwise identical to an uninterrupted one (tests/test_train.py kills it with
SIGKILL).

An invocation ends at ``max_steps``, or early and cleanly (with a checkpoint) at ``time_budget``
seconds, after ``max_steps_per_invocation`` steps or at the next multiple of ``pause_every`` (status
``paused``), so a SLURM job can requeue and a study can evaluate the run as it trains. A
non-finite loss, or non-finite weights after an update (the last one included), stops the run
(status ``diverged``) without saving the broken state: the last good
checkpoint stays the newest. Every rank takes both decisions together (``StopChecks``: one
all-reduce every ``log_every`` steps and before every checkpoint), so no rank is left in a
collective the others have left. A trainer holds the
run directory's lock while it runs.

Fixed relative to the reference trainer (docs/models.md): per-rank seeds differ; the EMA copy is
never wrapped for DDP; unused parameters do not break DDP; gradients are clipped before the
optimizer step; resume takes the step and data position from the checkpoint itself; checkpoints
that do not verify are set aside, never overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from usm.data.datasets import ImageDataset, StepBatches, open_dataset
from usm.data.folder import DataError
from usm.devices import default_device
from usm.files import remove_dead_temps
from usm.precision import use_tf32
from usm.rectified_flow import training_loss
from usm.seeding import derive_seed, generator
from usm.training import trackers
from usm.training.checkpoint import newest_verified, remove_orphan_checksums, save_checkpoint, set_aside
from usm.training.config import Config, ConfigError
from usm.training.ema import make_ema, update_ema
from usm.training.run_dir import RunDir, check_checkpoint_identity, model_from_config

log = logging.getLogger("usm.train")


class NoVerifiedCheckpoint(RuntimeError):
    """Checkpoints exist but none verifies: starting again would silently discard the run."""


@dataclass
class Outcome:
    status: str  # "done" (max_steps reached), "paused" (invocation limit), "diverged", "dry-run"
    step: int
    model_config: dict | None = field(default=None, repr=False, compare=False)  # the built model's arguments


@dataclass
class Session:
    """Everything ``setup`` prepares: checked, nothing written yet."""

    cfg: Config
    accelerator: object
    run: RunDir
    dataset: ImageDataset
    source: torch.utils.data.Dataset
    vae: object
    resolved: dict
    model: torch.nn.Module
    rank: int = 0
    world: int = 1


class CachedLatents(torch.utils.data.Dataset):
    """A dataset whose images are replaced by their cached latents (image or mirror)."""

    def __init__(self, dataset: ImageDataset, latents: np.ndarray):
        self.dataset, self.latents = dataset, latents

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, flip = item
        return {"x": torch.from_numpy(np.array(self.latents[index, int(flip)])), **self.dataset.extras(index)}


class CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a line is logged, not the stream it
    was made with: a notebook or a test that swaps stderr after a run never meets a closed stream."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler assigns it; the property always answers sys.stderr
        pass


def setup_logging(run: RunDir, is_main: bool, to_file: bool) -> None:
    handlers = [CurrentStderr()]
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
                   dataset_size=len(dataset), class_names=dataset.class_names if data.cond == "class" else [],
                   data_fingerprint=dataset.fingerprint)
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


# --------------------------------------------------------------------------------------------------
# Stage 1: setup. Everything is checked here; nothing is written but the log.

def setup(cfg: Config) -> Session:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cfg.validate()
    # cpu=True off-GPU: without it accelerate does not set up multi-process CPU runs (torchrun + gloo).
    # DDP walks the autograd graph every step looking for unused parameters only for a model that
    # says it may leave some out (``leaves_parameters_unused``; set once the model is built, below):
    # every registered model gives each trainable parameter a gradient in every step (tested).
    accelerator = Accelerator(cpu=default_device() == "cpu", mixed_precision=cfg.train.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
                              **trackers.accelerator_kwargs(cfg.run.log_with, cfg.run.run_dir))
    run = RunDir(cfg.run.run_dir)
    if not cfg.run.dry_run:
        run.check_writable()
    setup_logging(run, accelerator.is_main_process, to_file=not cfg.run.dry_run)
    if use_tf32(accelerator.device):
        log.info("float32 matrix products and convolutions use TF32 on %s", accelerator.device)

    dataset = open_dataset(cfg.data.data, cfg.data.resolution, cfg.data.context, cfg.data.skip_bad_images)
    if dataset.skipped:
        log.warning("skipped %d unusable images of %s (--skip-bad-images)", dataset.skipped, cfg.data.data)
    vae = None
    if cfg.data.latent != "none":
        from usm.data.latents import load_vae

        vae = load_vae(cfg.data.latent, accelerator.device)
    resolved = resolve(cfg, dataset, vae)
    # DataError now, not at the first step, if the data cannot fill one global batch
    StepBatches(len(dataset), cfg.train.batch_size, cfg.train.seed, accelerator.num_processes)
    torch.manual_seed(derive_seed(cfg.train.seed, "init"))  # identical initial weights on every rank
    try:
        model = model_from_config(resolved)
    except (ValueError, TypeError) as exc:  # e.g. a resolution the model's patching cannot divide
        raise ConfigError(f"{cfg.model.model} cannot be built for this run: {exc}") from None
    resolved["derived"]["model_config"] = model.config
    accelerator.ddp_handler.find_unused_parameters = bool(getattr(model, "leaves_parameters_unused", False))
    return Session(cfg, accelerator, run, dataset, dataset, vae, resolved, model,
                   accelerator.process_index, accelerator.num_processes)


# --------------------------------------------------------------------------------------------------
# Stage 2: write the run's config (and its latent cache), then resume from the newest verified checkpoint.

def write_run_config(s: Session) -> None:
    """Write (or check) config.json: only now, after every check of ``setup`` passed."""
    if s.accelerator.is_main_process:
        s.run.write_config(s.resolved)
    s.accelerator.wait_for_everyone()
    cfg = s.cfg
    if s.vae is not None and cfg.data.latent_cache:
        from usm.data.latents import build_latent_cache

        if s.accelerator.is_main_process:  # encode once, then every rank reads the file
            build_latent_cache(s.dataset, s.vae, cfg.data.latent_cache, progress=lambda it: tqdm(it, desc="latents"))
        s.accelerator.wait_for_everyone()
        s.source = CachedLatents(s.dataset, build_latent_cache(s.dataset, s.vae, cfg.data.latent_cache))
        s.vae = None  # batches already hold latents


def resume(s: Session, ema, optimizer, scheduler) -> int:
    """Load the newest verified checkpoint into model, EMA, optimizer, scheduler and RNGs; its step."""
    found, broken = newest_verified(s.run.checkpoints)
    if found is None and broken and not s.cfg.run.from_scratch:
        raise NoVerifiedCheckpoint(
            f"{s.run.checkpoints} holds {len(broken)} checkpoint(s) and none verifies (newest: {broken[0].name}); "
            "starting again would discard the run. Restore them, or rerun with --from-scratch to start at "
            "step 0 (they are moved to checkpoints/unverified/, not deleted)")
    if s.accelerator.is_main_process:
        for path in broken:
            log.warning("moved unverifiable checkpoint %s to %s", path, set_aside(path))
    s.accelerator.wait_for_everyone()
    step = 0
    if found is not None:
        step, state, path = found
        check_checkpoint_identity(state, path, s.resolved["identity"])
        s.model.load_state_dict(state["model"])  # strict: a mismatch is an error, never a silent partial load
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"][s.rank] if s.rank < len(state["rng"]) else state["rng"][0])
        log.info("resumed from %s (step %d)", path, step)
    else:
        log.info("starting %s: %s parameters", s.cfg.model.model, f"{sum(p.numel() for p in s.model.parameters()):,}")
    dropped = s.run.drop_stats_after(step) if s.accelerator.is_main_process else 0
    if dropped:
        log.info("dropped %d stats lines logged after step %d (those steps are trained again)", dropped, step)
    return step


# --------------------------------------------------------------------------------------------------
# Stage 3: the loop.

def loss_of(s: Session, model, batch: dict, step: int) -> torch.Tensor:
    """The rectified-flow loss of one batch; every random draw derives from (seed, rank, step)."""
    cfg, device = s.cfg, s.accelerator.device
    torch.manual_seed(derive_seed(cfg.train.seed, "step", s.rank, step))  # label dropout and the like
    x = batch["x"].to(device)
    if s.vae is not None:
        from usm.data.latents import encode

        x = encode(s.vae, x).float()
    cond = make_batch_cond(batch, cfg.data.cond, device)
    noise_gen = generator(cfg.train.seed, "noise", s.rank, step, device=device)
    return training_loss(model, x, cond, cfg.train.timesteps, noise_gen)


def own_message(exc: Exception) -> str:
    """An error's own message: a DataLoader worker's comes wrapped in the worker's traceback
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."), whose last line is it."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(f"{type(exc).__module__}.{type(exc).__name__}: ") else last


def loss_after(s: Session, model, batch: dict, step: int) -> torch.Tensor:
    """The loss of ``batch`` under the weights as they are (no gradient), leaving every generator as it
    was: a loss checked before each update cannot see what the last update did."""
    saved = rng_state()
    with torch.no_grad():
        loss = loss_of(s, model, batch, step)
    restore_rng(saved)
    return loss


def update(s: Session, model, trainable: list, loss: torch.Tensor, ema, optimizer, scheduler) -> torch.Tensor:
    """Backward, gradient clipping (before the step), AdamW, scheduler and EMA; the gradient norm."""
    s.accelerator.backward(loss)
    if s.cfg.train.grad_clip > 0:
        grad_norm = s.accelerator.clip_grad_norm_(trainable, s.cfg.train.grad_clip)
    else:
        grad_norm = torch.sqrt(sum(p.grad.float().square().sum() for p in trainable if p.grad is not None))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    update_ema(ema, s.accelerator.unwrap_model(model), s.cfg.train.ema_decay)
    return grad_norm


class StopChecks:
    """Whether to stop -- a non-finite loss, or the time budget spent -- decided the same on every
    rank, with one host sync every ``every`` steps instead of one a step.

    Each step adds its loss's finiteness to a flag on the device (no sync, so the host keeps queuing
    GPU work ahead); at a check step, which every step that writes a checkpoint also is, one
    all-reduce (max) of (non-finite seen, budget spent) gives every rank the same answer. A rank that
    stopped on its own view would leave the others waiting in a collective it never enters. A
    divergence is found at most ``every`` steps late, never after a checkpoint of its weights."""

    def __init__(self, device, world: int, every: int):
        self.world, self.every = world, every
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step, -1: none

    def add(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach().float())
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)

    def add_weights(self, params, step: int) -> None:
        """The weights after the update of ``step``: a loss checked before each update cannot see
        the last update's overflow, which a checkpoint would then save."""
        bad = ~torch.stack([torch.isfinite(p.detach()).all() for p in params]).all()
        self.first_bad = torch.where(bad & (self.first_bad < 0), step - 1, self.first_bad)

    def due(self, step: int, saving: bool) -> bool:
        return saving or step % self.every == 0

    def agree(self, out_of_time: bool) -> tuple[int | None, bool]:
        """(the first non-finite step any rank saw, or None; whether any rank's budget is spent)."""
        none = float(2 ** 62)
        earliest = torch.where(self.first_bad >= 0, self.first_bad.double(), none)
        flags = torch.stack([-earliest, torch.tensor(float(out_of_time), device=earliest.device).double()])
        if self.world > 1:  # max of -step: the earliest first non-finite step of any rank
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        neg_first, spent = flags.tolist()  # the host sync
        return (int(-neg_first) if -neg_first < none else None), spent > 0


def save_state(s: Session, step: int, model, ema, optimizer, scheduler) -> None:
    """A checkpoint of everything a resume needs, every rank's generators included (each resumes its own)."""
    states = [rng_state()]
    if s.world > 1:
        states = [None] * s.world
        torch.distributed.all_gather_object(states, rng_state())
    if s.accelerator.is_main_process:
        save_checkpoint(s.run.checkpoints, step, {
            "step": step, "model": s.accelerator.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": states,
            "config": s.resolved}, keep=s.cfg.run.keep)
    s.accelerator.wait_for_everyone()


def run_steps(s: Session, step: int, ema, optimizer, scheduler) -> Outcome:
    cfg, accelerator = s.cfg, s.accelerator
    model, optimizer = accelerator.prepare(s.model, optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def checkpoint(at_step: int) -> None:
        save_state(s, at_step, model, ema, optimizer, scheduler)

    end = invocation_end(cfg, step)
    if step >= end:
        log.info("nothing to do: the run is at step %d of %d", step, cfg.train.max_steps)
        return Outcome("done" if step >= cfg.train.max_steps else "paused", step)

    order = StepBatches(len(s.dataset), cfg.train.batch_size, cfg.train.seed, s.world, s.rank)
    loader = torch.utils.data.DataLoader(s.source, batch_sampler=order.sampler(step, end),
                                         num_workers=cfg.run.num_workers)
    started, last_log, last_log_step, last_saved = time.monotonic(), time.monotonic(), step, step
    checks = StopChecks(accelerator.device, s.world, cfg.run.log_every)
    bar = tqdm(total=cfg.train.max_steps, initial=step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True, mininterval=1.0)
    status = "done"
    model.train()
    try:  # the bar ends its line however the loop ends, so an error is printed on its own line
        batches = iter(loader)
        while step < end:
            try:
                batch = next(batches)
            except DataError as exc:  # an image that broke mid-run: keep the steps trained so far, then stop
                if step > last_saved and s.world == 1:  # a lone rank cannot gather the others' states
                    checkpoint(step)
                raise DataError(own_message(exc)) from None
            loss = loss_of(s, model, batch, step)
            grad_norm = update(s, model, trainable, loss, ema, optimizer, scheduler)
            checks.add(loss, step)
            step += 1
            bar.update(1)
            if step == end:  # the last update's result, before a checkpoint keeps it
                checks.add(loss_after(s, model, batch, step), step)
            if not checks.due(step, saving=step % cfg.run.ckpt_every == 0 or step == end):
                continue
            checks.add_weights(trainable, step)
            first_bad, out_of_time = checks.agree(cfg.run.time_budget is not None
                                                  and time.monotonic() - started > cfg.run.time_budget)
            if first_bad is not None:  # the weights since are not saved: the newest checkpoint is the last good state
                log.error("non-finite loss or weights at step %d (on at least one rank): stopping without saving; "
                          "the newest checkpoint (step %d) is the last good state. Every draw is seeded, so "
                          "resuming this run unchanged diverges again: start a new --run-dir with a lower --lr or "
                          "a --grad-clip.",
                          first_bad, last_saved)
                status = "diverged"
                break

            if step % cfg.run.log_every == 0 or step == end:  # a check step: the sync has waited for the loss
                now = time.monotonic()
                log_stats(s, bar, stats_record(s, step, accelerator.reduce(loss.detach(), reduction="mean").item(),
                                               scheduler.get_last_lr()[0], float(grad_norm),
                                               (step - last_log_step) / max(now - last_log, 1e-9)))
                last_log, last_log_step = now, step
            if step % cfg.run.ckpt_every == 0 or step == end or out_of_time:
                checkpoint(step)
                last_saved = step
            if out_of_time and step < end:
                status = "paused"
                log.info("time budget of %.0f s used at step %d: checkpoint saved, rerun to resume",
                         cfg.run.time_budget, step)
                break
    finally:
        bar.close()
    return finished(cfg, status, step)


def log_stats(s: Session, bar, record: dict) -> None:
    """One stats record to stats.jsonl and the progress bar (main process) and to the trackers."""
    if s.accelerator.is_main_process:
        s.run.append_stats(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
    trackers.log(s.accelerator, s.cfg.run.log_with, record)  # accelerate logs on the main process only


def finished(cfg: Config, status: str, step: int) -> Outcome:
    """The invocation's outcome: a loop that ran out of steps before --max-steps paused."""
    if status == "done" and step < cfg.train.max_steps:
        log.info("invocation limit reached at step %d of %d: rerun to resume", step, cfg.train.max_steps)
        return Outcome("paused", step)
    if status == "done":
        log.info("finished: step %d", step)
    return Outcome(status, step)


def invocation_end(cfg: Config, step: int) -> int:
    """The step this invocation stops at: the run's end, or sooner with --max-steps-per-invocation
    or at the next multiple of --pause-every (an evaluation of the learning curve)."""
    end = cfg.train.max_steps
    if cfg.run.max_steps_per_invocation:
        end = min(end, step + cfg.run.max_steps_per_invocation)
    if cfg.run.pause_every:
        end = min(end, (step // cfg.run.pause_every + 1) * cfg.run.pause_every)
    return end


def stats_record(s: Session, step: int, loss: float, lr: float, grad_norm: float, steps_per_s: float) -> dict:
    """One stats.jsonl line: the step's numbers and what the run costs (speed, peak memory)."""
    images = s.cfg.train.batch_size * s.world
    return {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "steps_per_s": steps_per_s,
            "images_per_s": steps_per_s * images, "sec_per_kimg": 1000 / max(steps_per_s * images, 1e-9),
            "images_seen": step * images, **peak_memory(s.accelerator.device)}


def peak_memory(device: torch.device) -> dict:
    """The process's peak resident memory (MiB, since it started) and, on CUDA, the peak allocated
    by torch on ``device`` (MiB): a run's cost, read from its own stats.jsonl (as edm2 records)."""
    import resource

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def lr_factor(t):
    """The learning rate of step i as a fraction of --lr: a linear warm-up over ``warmup_steps``,
    then constant, or a cosine from 1 at the warm-up's end to 0 at ``max_steps``.

        >>> from usm.training.config import TrainConfig
        >>> f = lr_factor(TrainConfig(max_steps=10, warmup_steps=2, lr_schedule="cosine"))
        >>> [round(f(i), 3) for i in (0, 1, 2, 6, 9)]
        [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    warmup, total, cosine = t.warmup_steps, t.max_steps, t.lr_schedule == "cosine"

    def factor(i: int) -> float:
        if warmup and i < warmup:
            return (i + 1) / warmup
        if not cosine:
            return 1.0
        done = (i - warmup) / max(total - warmup, 1)  # 0 at the warm-up's end, (n-1)/n at the last step
        return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    return factor


# --------------------------------------------------------------------------------------------------
# The whole run.

def train(cfg: Config) -> Outcome:
    s = setup(cfg)
    built = s.resolved["derived"]["model_config"]  # what the run's caller measures the model by
    if cfg.run.dry_run:
        print(json.dumps(s.resolved, indent=2))
        return Outcome("dry-run", 0, built)
    lock = s.run.locked() if s.accelerator.is_main_process else contextlib.nullcontext()
    with lock:
        if s.accelerator.is_main_process:  # a writer killed mid-write left these; none can be running now
            for path in (remove_dead_temps(s.run.path) + remove_dead_temps(s.run.checkpoints)
                         + remove_orphan_checksums(s.run.checkpoints)):
                log.info("removed %s, left by a writer that was killed", path)
        write_run_config(s)
        ema = make_ema(s.model).to(s.accelerator.device)
        trainable = [p for p in s.model.parameters() if p.requires_grad]
        # fused: one kernel for every tensor's update (CPU and CUDA); a loop of small kernels per tensor otherwise
        optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg.train))
        step = resume(s, ema, optimizer, scheduler)
        trackers.start(s.accelerator, cfg.run.log_with, s.run.path.name, s.resolved)
        try:
            return dataclasses.replace(run_steps(s, step, ema, optimizer, scheduler), model_config=built)
        finally:
            trackers.end(s.accelerator, cfg.run.log_with)
