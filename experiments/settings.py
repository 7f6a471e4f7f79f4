"""A study point's settings, typed: what it trains, how it samples and how it is scored.

    >>> s = Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=128, train={"max_steps": 960})
    >>> s = s.set("model_args.skip_conn", False).set("train.lr", 1e-3).set("num_samples", 64)
    >>> s.model_args, s.train, s.num_samples
    ({'skip_conn': False}, {'max_steps': 960, 'lr': 0.001}, 64)

A setting is named by a dotted path, the one way both a grid's axis and ``--set PATH=VALUE`` name
it: a field (``num_samples``, ``eval_every``, ``model``, ...), ``model_args.ARG`` (a constructor
argument of the model) or ``train.FIELD`` (a field of the trainer's ``Config``, by name: ``lr``,
``timesteps``, ``max_steps``, ``ckpt_every``, ...). ``trainer_config`` and ``sample_config`` are
the typed configs the trainer and the sampler run; ``to_dict`` is the form ``point.json`` stores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from usm.devices import default_device
from usm.files import safe_name
from usm.models.registry import MODELS
from usm.training.config import Config, ConfigError
from usm.training.sampling import SampleConfig


class SettingsError(ValueError):
    """A path that names no setting; the message lists the valid ones."""


SECTIONS = ("model_args", "train")  # the settings that are dicts: set one key with section.KEY


@dataclass(frozen=True)
class Settings:
    model: str  # a registered model's name
    data: str  # an embedded dataset's name, or a folder of images
    resolution: int  # image size in pixels (through the VAE: 8x the latent's side)
    train: dict  # trainer fields by name (usm.training.config): max_steps, batch_size, lr, timesteps, seed, ...
    num_samples: int  # final samples, scored
    sample_steps: int = 25  # Euler steps of the sampler
    metric: str = "pixel"  # "pixel" (the embedded data's suite: k-NN, shape features, SWD) or "fid"
    latent: str = "none"  # "none" (pixel space) or a VAE
    model_args: dict = field(default_factory=dict)  # constructor arguments replacing the model's defaults
    eval_every: int | None = None  # learning curve: sample and score the run every N steps as it trains
    eval_samples: int | None = None  # samples per learning-curve evaluation (the first of the final ones too)
    log_with: str = "none"  # a tracker the run also reports to: how it is watched, not what it computes

    def set(self, path: str, value) -> "Settings":
        """A copy with the setting at ``path`` (``num_samples``, ``model_args.ARG``, ``train.FIELD``) set."""
        section, dot, key = path.partition(".")
        if dot and section in SECTIONS and key:
            return dataclasses.replace(self, **{section: {**getattr(self, section), key: value}})
        if not dot and path in FIELDS and path not in SECTIONS:
            return dataclasses.replace(self, **{path: value})
        plain = ", ".join(f for f in FIELDS if f not in SECTIONS)
        raise SettingsError(f"{path!r} names no setting; settings are {plain}, model_args.ARG (a constructor "
                            "argument) or train.FIELD (a trainer field)")

    def get(self, path: str):
        section, dot, key = path.partition(".")
        return getattr(self, section).get(key) if dot else getattr(self, path)

    def to_dict(self) -> dict:
        """What ``point.json`` stores (the tracker only when one is set: it never makes another point)."""
        out = {name: getattr(self, name) for name in STORED}
        return {**out, "model_args": dict(self.model_args), "train": dict(self.train),
                **({"log_with": self.log_with} if self.log_with != "none" else {})}

    @classmethod
    def from_dict(cls, stored: dict) -> "Settings":
        return cls(**stored)

    def trainer_config(self, directory: str | Path) -> Config:
        """The trainer's typed config (``train`` holds any trainer field by name); with a learning
        curve the trainer pauses at every evaluation step. A latent study's points train from one
        latent cache per dataset in the study's folder (``latent_cache_path``): the VAE encodes
        each image once, not every step of every point."""
        latent = {} if self.latent == "none" else {"latent_cache": str(self.latent_cache_path(directory))}
        return Config.from_flat({"model": self.model, "data": self.data, "resolution": self.resolution,
                                 "latent": self.latent, "model_args": dict(self.model_args), "run_dir": str(directory),
                                 "pause_every": self.eval_every, "log_with": self.log_with, **latent, **self.train})

    def sample_config(self, directory: str | Path) -> SampleConfig:
        """The sampler's config: the final samples, seed 0 (every point draws from the same latents),
        in ``samples/final``, on the GPU when there is one; a text run's samples are conditioned on
        its training tokens (row i for image i)."""
        return SampleConfig(target=str(directory), num=self.num_samples, steps=self.sample_steps, seed=0,
                            out=str(Path(directory) / "samples" / "final"), context=self.train.get("context"),
                            device=default_device()).validate()

    def latent_cache_path(self, directory: str | Path) -> Path:
        """``<study>/latents/<dataset>-<resolution>px-<vae>.npy``, shared by the study's points."""
        name = f"{safe_name(str(self.data))}-{self.resolution}px-{safe_name(str(self.latent))}.npy"
        return Path(directory).parent / "latents" / name

    def check_buildable(self) -> None:
        """ConfigError unless the model builds with its constructor arguments at its input size (on
        the meta device: no weights, milliseconds), so that a value its constructor refuses (an init
        rule, a depth, a patch the image does not divide) is refused before anything launches."""
        import torch

        side = self.resolution // (8 if self.latent != "none" else 1)  # SD-VAE's factor
        channels = 4 if self.latent != "none" else 3
        try:
            with torch.device("meta"):
                MODELS[self.model].build(input_size=side, in_channels=channels, **self.model_args)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.model} cannot be built with {self.model_args or 'its defaults'} "
                              f"at {side}x{side}: {exc}") from None


FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
# point.json's order, which a study's first launch wrote and later ones compare by value
STORED = ("model", "data", "resolution", "latent", "model_args", "train", "num_samples", "sample_steps", "metric",
          "eval_every", "eval_samples")
