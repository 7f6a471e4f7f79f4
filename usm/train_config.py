"""Typed configuration of a training run: one dataclass per concern, flags generated from them.

    >>> from usm.train_config import parse_args
    >>> cfg = parse_args(["--model", "USM-T/2", "--run-dir", "/tmp/r", "--model-arg", "skip_conn=false"])
    >>> cfg.model.model_args, cfg.train.lr
    ({'skip_conn': False}, 0.0001)

Every field becomes a ``--flag`` (underscores -> dashes) with its default and the reason for it as
help. ``identity()`` is what makes two runs the same run: changing it in an existing run directory
is an error, while runtime fields (``RUNTIME``: how long to go on, how often to save) may change
between invocations of one run.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from usm.cli import parse_assignments
from usm.registry import MODELS


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    model: str = _opt("USM-T/2", "registered model name", choices=sorted(MODELS), metavar="NAME")
    model_args: dict = _opt(None, "constructor overrides KEY=VALUE, e.g. skip_conn=false (ablation arms)",
                            nargs="*", metavar="KEY=VALUE", flag="--model-arg")
    class_dropout_prob: float = _opt(0.1, "label/caption dropout for classifier-free guidance (DiT's 0.1)")


@dataclass
class DataConfig:
    data: str = _opt("shapes", "'shapes' (embedded, 32x32, no download) or a folder of images")
    resolution: int = _opt(32, "training image size (centre crop); 256 for the paper's datasets")
    cond: str = _opt("none", "conditioning: none, class (sub-folder labels) or text (--context tokens)",
                     choices=["none", "class", "text"])
    context: str = _opt(None, "text mode: .npy of precomputed tokens (num_images, tokens, d_context)")
    latent: str = _opt("none", "none (pixel space), sd-vae-ft-ema, sd-vae-ft-mse, or a local VAE folder")
    latent_cache: str = _opt(None, "encode the dataset once into this .npy and train from it")
    skip_bad_images: bool = _opt(False, "leave unreadable/too-small images out (counted) instead of stopping")


@dataclass
class TrainConfig:
    max_steps: int = _opt(400_000, "total optimizer steps of the run (the paper trains up to 400k)")
    batch_size: int = _opt(8, "per-process batch (the paper's 8)")
    lr: float = _opt(1e-4, "AdamW learning rate (the paper's 1e-4)")
    weight_decay: float = _opt(0.0, "AdamW weight decay (the paper uses none)")
    warmup_steps: int = _opt(0, "linear learning-rate warm-up steps")
    grad_clip: float = _opt(1.0, "clip the global gradient norm before each step; 0 = off")
    ema_decay: float = _opt(0.9999, "EMA decay of the trainable weights (the paper's 0.9999)")
    timesteps: str = _opt("log", "timestep sampling: log (logit-normal) or uniform over [0, 1]",
                          choices=["log", "uniform"])
    seed: int = _opt(0, "run seed; every random draw derives from (seed, rank, step)")
    mixed_precision: str = _opt("no", "no, bf16 or fp16 (GPU)", choices=["no", "bf16", "fp16"])


@dataclass
class RunConfig:
    run_dir: str = _opt(None, "run directory (required): config, logs, stats, checkpoints", required=True)
    ckpt_every: int = _opt(1000, "checkpoint every N steps (and always when an invocation ends)")
    keep: int = _opt(3, "checkpoints to keep (newest)")
    log_every: int = _opt(10, "append a stats.jsonl line every N steps")
    num_workers: int = _opt(0, "data-loader worker processes")
    time_budget: float = _opt(None, "end this invocation cleanly (with a checkpoint) after S seconds")
    max_steps_per_invocation: int = _opt(None, "end this invocation after N steps (SLURM requeue chunks)")
    dry_run: bool = _opt(False, "print the resolved config and exit")


@dataclass
class Config:
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    run: RunConfig

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What defines the run (everything but RUNTIME fields)."""
        out = self.to_dict()
        for section, name in RUNTIME:
            out[section].pop(name, None)
        return out


# Fields that may change between invocations of the same run.
RUNTIME = [("train", "max_steps"), *[("run", f.name) for f in dataclasses.fields(RunConfig)],
           ("data", "latent_cache")]
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "run": RunConfig}


def build_parser(prog: str = "python -m usm.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a registered model with rectified flow. "
                                     "Run the same command again to resume from the latest checkpoint.")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            meta = dict(f.metadata)
            flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
            kwargs = dict(dest=f"{section}.{f.name}", help=f"{meta.pop('help')} (default: {f.default})", **meta)
            if f.type in ("bool", bool):
                group.add_argument(flag, action="store_true", **kwargs)
                continue
            kwargs.setdefault("metavar", f.name.upper() if "choices" not in meta else None)
            if "nargs" in meta:
                group.add_argument(flag, **kwargs)
            else:
                kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
                group.add_argument(flag, type=kind, default=f.default, **kwargs)
    return parser


def parse_args(argv=None) -> Config:
    args = vars(build_parser().parse_args(argv))
    sections = {name: {} for name in SECTIONS}
    for key, value in args.items():
        section, name = key.split(".")
        sections[section][name] = value
    sections["model"]["model_args"] = parse_assignments(sections["model"]["model_args"], "--model-arg")
    return Config(**{name: cls(**sections[name]) for name, cls in SECTIONS.items()})
