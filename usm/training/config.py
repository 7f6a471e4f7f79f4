"""Typed configuration of a training run: one dataclass per concern, flags generated from them.

    >>> from usm.training.config import Config, parse_args
    >>> cfg = parse_args(["--model", "USM-T/2", "--run-dir", "/tmp/r", "--model-arg", "skip_conn=false"])
    >>> cfg.model.model_args, cfg.train.lr
    ({'skip_conn': False}, 0.0001)
    >>> Config.from_flat({"model": "USM-T/2", "run_dir": "/tmp/r", "batch_size": 0})
    Traceback (most recent call last):
    ...
    usm.training.config.ConfigError: --batch-size 0: must be at least 1

Every field becomes a ``--flag`` (underscores -> dashes) with its default and the reason for it as
help. ``identity()`` is what makes two runs the same run: changing it in an existing run directory
is an error, while runtime fields (``RUNTIME``: how long to go on, how often to save) may change
between invocations of one run.

``Config.from_flat`` builds a config from field names (what the experiment layer uses) and
``validate`` checks every value that can be checked without touching the run directory, so a bad
input ends with one ``ConfigError`` line naming the flag, the value and the fix, before anything
is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from usm import deprecated
from usm.cli import TYPE_NAMES, parse_assignments, typed
from usm.data.datasets import missing_context
from usm.models.registry import MODELS
from usm.models.spec import ModelArgError
from usm.training import trackers
from usm.training.trackers import CHOICES


class ConfigError(ValueError):
    """A setting that cannot run; the message names the flag, the value and the fix."""


# Constructor arguments a run takes from its data, never from --model-arg (a 32 px model on 16 px
# data would die at its first step): the argument -> the setting that decides it.
DERIVED_FROM_DATA = {"input_size": "--resolution, or the latent's size with --latent",
                     "in_channels": "the images' channels, or the latent's with --latent",
                     "num_classes": "--cond class: the data's class folders", "has_text": "--cond text",
                     "d_context": "--cond text: the --context tokens' width",
                     "class_dropout_prob": "--class-dropout-prob"}


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    model: str = _opt("USM-T/2", "registered model name", choices=sorted(MODELS), metavar="NAME")
    model_args: dict = _opt(None, "constructor arguments KEY=VALUE replacing the defaults, e.g. skip_conn=false",
                            action="extend", nargs="*", metavar="KEY=VALUE", flag="--model-arg")
    class_dropout_prob: float = _opt(0.1, "label/caption dropout for classifier-free guidance (DiT's 0.1)")


@dataclass
class DataConfig:
    data: str = _opt("shapes", "an embedded dataset (no download): shapes, shapes-gray (16 or 32 px), digits "
                               "(UCI handwritten digits, 8, 16 or 32 px); or a folder of images")
    resolution: int = _opt(32, "training image size (centre crop); 256 for the paper's datasets")
    cond: str = _opt("none", "conditioning: none, class (sub-folder labels) or text (--context tokens)",
                     choices=["none", "class", "text"])
    context: str = _opt(None, "text mode: .npy of precomputed tokens (num_images, tokens, d_context), "
                              "or 'captions' (synthetic captions of the embedded data)")
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
    lr_schedule: str = _opt("constant", "after the warm-up: constant (the paper's), or cosine (decay to 0 at "
                                        "--max-steps; then changing --max-steps changes the schedule)",
                            choices=["constant", "cosine"])
    grad_clip: float = _opt(1.0, "clip the global gradient norm before each step; 0 = off")
    ema_decay: float = _opt(0.9999, "EMA decay of the trainable weights (the paper's 0.9999)")
    timesteps: str = _opt("logit_normal", "timestep sampling: logit_normal (t = sigmoid of a standard normal) "
                          "or uniform over [0, 1]", choices=["logit_normal", "uniform"])
    seed: int = _opt(0, "run seed; every random draw derives from (seed, rank, step)")
    mixed_precision: str = _opt("no", "no, bf16 or fp16 (GPU)", choices=["no", "bf16", "fp16"])


@dataclass
class RunConfig:
    run_dir: str = _opt(None, "run directory (required): config, logs, stats, checkpoints", required=True)
    ckpt_every: int = _opt(1000, "checkpoint every N steps (and always when an invocation ends)")
    keep: int = _opt(3, "checkpoints to keep (newest)")
    log_every: int = _opt(10, "append a stats.jsonl line every N steps")
    log_with: str = _opt("none", "also send those lines to a tracker through accelerate (RUN/trackers/; the "
                                 "'tracking' extra): none, tensorboard, wandb (offline unless WANDB_MODE says "
                                 "otherwise), mlflow, aim, or all that are installed", choices=list(CHOICES))
    num_workers: int = _opt(0, "data-loader worker processes")
    time_budget: float = _opt(None, "end this invocation cleanly (with a checkpoint) after S seconds")
    max_steps_per_invocation: int = _opt(None, "end this invocation after N steps (SLURM requeue chunks)")
    pause_every: int = _opt(None, "end this invocation at the next multiple of N steps, with a checkpoint "
                                  "(to evaluate the run as it trains)")
    dry_run: bool = _opt(False, "print the resolved config and exit")
    from_scratch: bool = _opt(False, "start at step 0 although checkpoints exist and none verifies "
                                     "(they are moved to checkpoints/unverified/, never deleted)")


@dataclass
class Config:
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    run: RunConfig

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, values: dict) -> "Config":
        """A validated config from ``{field: value}`` (field names are unique across sections)."""
        owner = {f.name: section for section, kind in SECTIONS.items() for f in dataclasses.fields(kind)}
        unknown = sorted(set(values) - set(owner))
        if unknown:
            raise ConfigError(f"unknown trainer setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(owner))}")
        sections = {name: {} for name in SECTIONS}
        for key, value in values.items():
            sections[owner[key]][key] = value
        cfg = cls(**{name: kind(**sections[name]) for name, kind in SECTIONS.items()})
        cfg.model.model_args = dict(cfg.model.model_args or {})
        cfg.validate()
        return cfg

    def validate(self) -> "Config":
        """Check types and ranges of every field, the data and conditioning, and the model and its
        arguments; ConfigError on the first problem. Nothing is written."""
        for section, kind in SECTIONS.items():
            part = getattr(self, section)
            for f in dataclasses.fields(kind):
                value = getattr(part, f.name)
                setattr(part, f.name, _typed(f, value))
        self._check_counts()
        self._check_numbers()
        self._check_run()
        self._check_data()
        self._check_model()
        return self

    def _check_counts(self) -> None:
        flag = _flag
        t, r, d = self.train, self.run, self.data
        positive = [(t.batch_size, "batch_size"), (r.ckpt_every, "ckpt_every"), (r.keep, "keep"),
                    (r.log_every, "log_every"), (d.resolution, "resolution")]
        for value, name in positive:
            if value < 1:
                raise ConfigError(f"{flag(name)} {value}: must be at least 1")
        for value, name in [(t.max_steps, "max_steps"), (t.warmup_steps, "warmup_steps"),
                            (r.num_workers, "num_workers"), (t.seed, "seed")]:
            if value < 0:
                raise ConfigError(f"{flag(name)} {value}: must not be negative")
        for value, name in [(r.max_steps_per_invocation, "max_steps_per_invocation"), (r.pause_every, "pause_every")]:
            if value is not None and value < 1:
                raise ConfigError(f"{flag(name)} {value}: must be at least 1")

    def _check_numbers(self) -> None:
        t, r = self.train, self.run
        if not (math.isfinite(t.lr) and t.lr > 0):
            raise ConfigError(f"--lr {t.lr}: must be a positive finite number (the paper's is 1e-4)")
        if not (math.isfinite(t.weight_decay) and t.weight_decay >= 0):
            raise ConfigError(f"--weight-decay {t.weight_decay}: must be a finite number >= 0")
        if not (math.isfinite(t.grad_clip) and t.grad_clip >= 0):
            raise ConfigError(f"--grad-clip {t.grad_clip}: must be a finite number >= 0 (0 turns clipping off)")
        if not 0 <= t.ema_decay < 1:
            raise ConfigError(f"--ema-decay {t.ema_decay}: must lie in [0, 1) (the paper's is 0.9999)")
        if r.time_budget is not None and not (math.isfinite(r.time_budget) and r.time_budget >= 0):
            raise ConfigError(f"--time-budget {r.time_budget}: must be a number of seconds >= 0 "
                              "(0 = one step, then a checkpoint)")

    def _check_run(self) -> None:
        r = self.run
        if not r.run_dir:
            raise ConfigError("--run-dir is required: the folder that holds the run's config, logs and checkpoints")
        try:
            trackers.check(r.log_with)
        except trackers.TrackerUnavailable as exc:
            raise ConfigError(str(exc)) from None

    def _check_data(self) -> None:
        d = self.data
        if missing_context(d.context):
            raise ConfigError(f"--context {d.context}: no such file (a .npy of tokens, one row per image)")
        if d.context is not None and d.cond != "text":
            raise ConfigError(f"--context is given but --cond is {d.cond!r}: add --cond text, or drop --context")
        from usm.data.latents import VAE_MODELS

        if d.latent not in ("none", *VAE_MODELS) and not Path(d.latent).is_dir():
            raise ConfigError(f"--latent {d.latent}: neither 'none', one of {', '.join(VAE_MODELS)}, "
                              "nor a folder holding a saved VAE")
        if d.latent_cache is not None and d.latent == "none":
            raise ConfigError("--latent-cache needs --latent (pixel-space runs read the images directly)")
        if self.run.run_dir and Path(d.data).is_dir() \
                and Path(self.run.run_dir).resolve().is_relative_to(Path(d.data).resolve()):
            raise ConfigError(f"--run-dir {self.run.run_dir} lies inside --data {d.data}: after a resume the run "
                              "would train on its own samples; put it elsewhere")

    def _check_model(self) -> None:
        if self.model.model not in MODELS:
            raise ConfigError(f"--model {self.model.model}: unknown; valid: {', '.join(sorted(MODELS))}")
        if not 0 <= self.model.class_dropout_prob < 1:
            raise ConfigError(f"--class-dropout-prob {self.model.class_dropout_prob}: must lie in [0, 1)")
        derived = sorted(set(self.model.model_args or {}) & set(DERIVED_FROM_DATA))
        if derived:
            key = derived[0]
            raise ConfigError(f"--model-arg {key}={self.model.model_args[key]}: the trainer sets {key} from the "
                              f"data ({DERIVED_FROM_DATA[key]}); change that instead")
        try:
            self.model.model_args = MODELS[self.model.model].check_model_args(self.model.model_args)
        except ModelArgError as exc:
            raise ConfigError(f"--model-arg: {exc}") from None

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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _typed(f: dataclasses.Field, value):
    """``value`` checked against the field's declared type (an int is fine for a float)."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if value is None and f.default is None:
        return value
    if kind in TYPE_NAMES:
        try:
            value = typed(kind, value)
        except TypeError:
            raise ConfigError(f"{_flag(f.name)} {value!r}: expected {TYPE_NAMES[kind]}") from None
    if kind == "dict" and not isinstance(value, dict):
        raise ConfigError(f"{_flag(f.name)} {value!r}: expected KEY=VALUE pairs")
    value = deprecated.value(f.name, value)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{_flag(f.name)} {value!r}: valid: {', '.join(choices)}")
    return value


def build_parser(prog: str = "python -m usm.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a registered model with rectified flow. "
                                     "Run the same command again to resume from the latest checkpoint.")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            meta = dict(f.metadata)
            flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
            kwargs = dict(dest=f"{section}.{f.name}", help=f"{meta.pop('help')} (default: {f.default})", **meta)
            if f.name in deprecated.VALUES:  # an old spelling still parses; _typed renames it with a warning
                kwargs["choices"] = [*kwargs["choices"], *deprecated.VALUES[f.name]]
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
    """The config of a command line, validated (ConfigError). argparse exits with code 2 on bad syntax."""
    args = vars(build_parser().parse_args(argv))
    flat = {key.split(".")[1]: value for key, value in args.items()}
    flat["model_args"] = parse_assignments(flat["model_args"], "--model-arg")
    return Config.from_flat(flat)
