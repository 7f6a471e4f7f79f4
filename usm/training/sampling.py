"""Draw samples from a trained run: PNGs plus one .npz, seeded, batched, resumable, with provenance.

    >>> from usm.training.sampling import SampleConfig
    >>> SampleConfig(target="runs/x", num=0).validate()
    Traceback (most recent call last):
    ...
    usm.training.sampling.SampleError: --num 0: must be at least 1

``generate(SampleConfig(...))`` loads a run directory's newest verified checkpoint (or a checkpoint
file) and writes image i, drawn from noise derived from (seed, i) -- and, for class models, label
``i % num_classes`` unless ``label`` -- as ``out/000000.png`` ... The result does not depend on the
batch size. EMA weights are used unless ``use_ema=False``; runs trained on VAE latents are decoded
through the same VAE; ``samples.npz`` (uint8 images, labels) is rewritten from the PNGs at the end.

``provenance.json`` records what drew the PNGs: the checkpoint (path, step, checksum), the model,
EMA or raw weights, solver, steps, guidance, seed, label and context file. A rerun reuses the PNGs
of a folder only when its provenance matches, and draws only the missing ones; a folder that holds
PNGs of other settings, or PNGs without provenance, is refused, so samples of different settings
never mix. Other files in the folder are ignored with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from usm.data.datasets import CAPTIONS, load_tokens, missing_context
from usm.digests import weights_sha256
from usm.files import TEMP, atomic_save, atomic_write, read_json, remove_dead_temps
from usm.rectified_flow import SAMPLERS, sample
from usm.seeding import generator
from usm.training.checkpoint import latest_checkpoint, load_verified
from usm.training.run_dir import RunDir, check_checkpoint_identity, model_from_config

log = logging.getLogger("usm.sample")
PNG = re.compile(r"^\d{6}\.png$")
OURS = {"samples.npz", "provenance.json"}


class SampleError(ValueError):
    """A sampling request that cannot run as asked; the message names the value and the fix."""


@dataclass
class SampleConfig:
    target: str  # a run directory (its newest verified checkpoint) or a checkpoint file
    num: int
    steps: int = 25  # the paper's 25 Euler steps
    method: str = "euler"
    seed: int = 0
    out: str | None = None  # default: RUN/samples/<checkpoint>-<method><steps>-cfg<scale>-<ema|raw>-s<seed>
    batch_size: int = 64
    cfg_scale: float = 1.0  # classifier-free guidance; 1 = off
    label: int | None = None  # class of every image; default i % num_classes
    context: str | None = None  # text runs: .npy of tokens (row i conditions image i), or "captions"
    use_ema: bool = True
    device: str = "cpu"

    def validate(self) -> "SampleConfig":
        for name in ("num", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise SampleError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.seed < 0:
            raise SampleError(f"--seed {self.seed}: must be a whole number >= 0")
        if self.method not in SAMPLERS:
            raise SampleError(f"--method {self.method}: valid: {', '.join(sorted(SAMPLERS))}")
        if not math.isfinite(self.cfg_scale):
            raise SampleError(f"--cfg-scale {self.cfg_scale}: must be a finite number (1 = no guidance)")
        if missing_context(self.context):
            raise SampleError(f"--context {self.context}: no such file (a .npy of tokens, one row per image)")
        check_device(self.device)
        return self

    def check_against(self, resolved: dict) -> None:
        """Checks that need the run: conditioning, labels, guidance."""
        derived = resolved["derived"]
        classes = derived["num_classes"]
        if self.label is not None and not classes:
            raise SampleError(f"--label {self.label}: this run is not class-conditional; drop --label")
        if self.label is not None and not 0 <= self.label < classes:
            raise SampleError(f"--label {self.label}: this run has {classes} classes (0..{classes - 1})")
        conditional = bool(classes or derived["d_context"])
        if self.cfg_scale != 1.0 and not conditional:
            raise SampleError(f"--cfg-scale {self.cfg_scale}: guidance needs a conditional run; this one is "
                              "unconditional (leave --cfg-scale at 1)")
        if self.cfg_scale != 1.0 and not resolved["identity"]["model"].get("class_dropout_prob", 0.1):
            raise SampleError(f"--cfg-scale {self.cfg_scale}: this run was trained without label dropout "
                              "(--class-dropout-prob 0), so it has no unconditional branch to guide with")
        if derived["d_context"] and self.context is None:
            raise SampleError("this run is text-conditional: pass --context tokens.npy (one row per image)")
        if self.context is not None and not derived["d_context"]:
            raise SampleError("--context is given but this run is not text-conditional; drop --context")


def check_device(name: str) -> None:
    """SampleError unless ``name`` is a device this machine has (cpu, cuda, cuda:N)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SampleError(f"--device {name}: not a device name (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise SampleError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise SampleError(f"--device {name}: {count} CUDA GPU(s) are visible here (cuda:0 to cuda:{count - 1})")
    elif device.type != "cpu":
        raise SampleError(f"--device {name}: the sampler runs on cpu or cuda")


@dataclass
class SampleResult:
    out: Path
    total: int
    new: int
    checkpoint: Path


def load_run_model(target: str | Path, use_ema: bool = True, device="cpu"):
    """(model, checkpoint state, checkpoint path) from a run directory (its newest verified
    checkpoint) or a checkpoint file."""
    target = Path(target)
    if target.is_dir():
        found = latest_checkpoint(RunDir(target).checkpoints)
        if found is None:
            raise SampleError(f"{target} has no verified checkpoint in checkpoints/: train it first "
                              "(python -m usm.train ... --run-dir it)")
        _, state, path = found
        config = RunDir(target).read_config()
        if config is not None:
            check_checkpoint_identity(state, path, config["identity"], "in config.json")
    elif target.is_file():
        try:
            state, path = load_verified(target), target
        except ValueError as exc:
            raise SampleError(str(exc)) from None
    else:
        raise SampleError(f"{target} is neither a run directory nor a checkpoint file")
    model = model_from_config(state["config"])
    model.load_state_dict(state["ema" if use_ema else "model"])  # strict
    return model.to(device).eval(), state, path


def sample_noise(seed: int, ids, shape: tuple) -> torch.Tensor:
    """The starting noise of images ``ids`` (B, *shape): image i's derives from (seed, i) alone, so it
    does not depend on the batch, and every run, arm and solver drawing image i starts from it."""
    return torch.stack([torch.randn(shape, generator=generator(seed, "sample", i)) for i in ids])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (B, C, H, W) -> uint8 (B, H, W, C)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


UNCOMPARED = ("checkpoint", "checkpoint_sha256")  # where the weights came from; the weights decide


def provenance(cfg: SampleConfig, state: dict, path: Path, model: torch.nn.Module) -> dict:
    """What the samples of a folder are drawn from and how. Samples are reused while every entry but
    UNCOMPARED matches: keyed by the weights' content, so a checkpoint written again with the same
    weights (a damaged one trained again) keeps its samples, and a moved run dir too."""
    sidecar = path.with_name(path.name + ".sha256")
    resolved = state["config"]
    return {"checkpoint": str(path.resolve()), "step": int(state.get("step", -1)),
            "checkpoint_sha256": sidecar.read_text().strip(),  # loaded checkpoints always have one
            "weights_sha256": weights_sha256(model),
            "model": resolved["identity"]["model"]["model"], "weights": "ema" if cfg.use_ema else "raw",
            "method": cfg.method, "steps": cfg.steps, "cfg_scale": cfg.cfg_scale, "seed": cfg.seed,
            "label": cfg.label, "context_sha256": cfg.context if cfg.context in (None, CAPTIONS)
            else _sha256(Path(cfg.context)),
            "shape": [resolved["derived"]["in_channels"], resolved["derived"]["input_size"]]}


def readable(png: Path, mode: str) -> np.ndarray | None:
    """The image of a sample already drawn, or None if there is none, or it does not decode (a write
    cut short by an older version, or damaged since): such a sample is drawn again."""
    if not png.exists():
        return None
    try:
        with Image.open(png) as image:
            return np.asarray(image.convert(mode))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises all three for broken files
        log.warning("drawing %s again: it does not decode (%s)", png, exc)
        return None


def prepare_folder(out: Path, record: dict) -> None:
    """Check (or start) the folder's provenance; SampleError if its PNGs come from something else."""
    out.mkdir(parents=True, exist_ok=True)
    for path in remove_dead_temps(out):
        log.info("removed %s, left by a sampler that was killed", path)
    files = [p.name for p in out.iterdir() if not TEMP.match(p.name)]
    pngs = [n for n in files if PNG.match(n)]
    others = sorted(set(files) - set(pngs) - OURS)
    if others:
        log.warning("ignoring %d file(s) in %s that the sampler did not write: %s", len(others), out,
                    ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    stamp = out / "provenance.json"
    if stamp.exists():
        existing = read_json(stamp, "remove that folder, or use another --out")
        # a folder of an earlier version has no weights digest: there the checkpoint's bytes decide
        uncompared = UNCOMPARED if "weights_sha256" in existing else ("checkpoint", "weights_sha256")
        diffs = [f"{k}: {existing.get(k)!r} there, {v!r} asked" for k, v in record.items()
                 if existing.get(k) != v and k not in uncompared]
        if diffs:
            raise SampleError(f"{out} holds samples drawn with other settings ({'; '.join(diffs)}): "
                              "use another --out, or remove that folder")
    elif pngs:
        raise SampleError(f"{out} holds {len(pngs)} PNGs without provenance.json (drawn by something else, or "
                          "by an older version): use another --out, or remove them")
    else:
        atomic_write(stamp, json.dumps(record, indent=2))


def default_out(cfg: SampleConfig, checkpoint: Path) -> Path:
    label = f"-y{cfg.label}" if cfg.label is not None else ""
    name = (f"{checkpoint.stem}-{cfg.method}{cfg.steps}-cfg{cfg.cfg_scale:g}-{'ema' if cfg.use_ema else 'raw'}"
            f"{label}-s{cfg.seed}")
    return checkpoint.parent.parent / "samples" / name


def check_finite(what, ckpt: Path, ids=None) -> None:
    """SampleError for a model with non-finite weights (before anything is written: a diverged
    checkpoint draws nothing) or a batch of samples ``ids`` holding NaN or inf (never written)."""
    if isinstance(what, torch.Tensor):
        if not torch.isfinite(what).all():
            raise SampleError(f"the samples of {ckpt} hold NaN or inf (images {ids[0]}-{ids[-1]}): the model's "
                              "output overflows; nothing of them is written")
        return
    broken = [name for name, p in what.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        raise SampleError(f"{ckpt} holds non-finite weights ({broken[0]}{' ...' if len(broken) > 1 else ''}): the "
                          "run diverged; sample an earlier checkpoint (give its file) or retrain with a lower --lr")


def generate(cfg: SampleConfig) -> SampleResult:
    cfg.validate()
    model, state, ckpt = load_run_model(cfg.target, cfg.use_ema, cfg.device)
    resolved = state["config"]
    derived, data = resolved["derived"], resolved["identity"]["data"]
    cfg.check_against(resolved)
    check_finite(model, ckpt)
    contexts = None
    if cfg.context is not None:  # a text run's tokens: row i conditions image i
        contexts = load_tokens(cfg.context, data["data"], data["resolution"])
        if len(contexts) < cfg.num:
            raise SampleError(f"--context {cfg.context} has {len(contexts)} rows for {cfg.num} images: "
                              "one row per image is needed")
    vae = None
    if data["latent"] != "none":
        from usm.data.latents import load_vae

        vae = load_vae(data["latent"], cfg.device)
    out = Path(cfg.out) if cfg.out else default_out(cfg, ckpt)
    prepare_folder(out, provenance(cfg, state, ckpt, model))

    def label_of(i):
        if not derived["num_classes"]:
            return -1
        return cfg.label if cfg.label is not None else i % derived["num_classes"]

    mode = "L" if derived["in_channels"] == 1 else "RGB"
    images = {i: readable(out / f"{i:06d}.png", mode) for i in range(cfg.num)}
    missing = [i for i, image in images.items() if image is None]
    shape = (derived["in_channels"], derived["input_size"], derived["input_size"])
    for start in tqdm(range(0, len(missing), cfg.batch_size), desc="sample", disable=not missing):
        ids = missing[start: start + cfg.batch_size]
        noise = sample_noise(cfg.seed, ids, shape)
        cond = None
        if derived["num_classes"]:
            cond = torch.tensor([label_of(i) for i in ids], device=cfg.device)
        elif contexts is not None:
            cond = torch.from_numpy(np.stack([np.asarray(contexts[i], dtype=np.float32) for i in ids])).to(cfg.device)
        x = sample(model, noise.to(cfg.device), cfg.steps, cfg.method, cond, cfg.cfg_scale)
        if vae is not None:
            from usm.data.latents import decode

            x = decode(vae, x)
        check_finite(x, ckpt, ids)
        for i, image in zip(ids, to_uint8(x)):
            images[i] = image[..., 0] if mode == "L" else image  # PNG is lossless: what the file holds
            atomic_save(out / f"{i:06d}.png", Image.fromarray(images[i]).save, format="PNG")
    stacked = np.stack([images[i] for i in range(cfg.num)])
    stacked = stacked[..., None] if mode == "L" else stacked
    atomic_save(out / "samples.npz", np.savez, images=stacked, labels=np.array([label_of(i) for i in range(cfg.num)]))
    return SampleResult(out, cfg.num, len(missing), ckpt)


__all__ = ["SampleConfig", "SampleError", "SampleResult", "generate", "load_run_model"]
