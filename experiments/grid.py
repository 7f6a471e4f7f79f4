"""Grids as data: axes, arms, seeds and two scales, expanded into validated points.

    >>> from experiments.grids import GRIDS
    >>> points = GRIDS["ablations"].points("smoke")
    >>> list(dict.fromkeys(p.arm for p in points))[:3], sorted({p.seed for p in points})
    (['recipe', 'skip_conn=False', 'upsampler=pixelshuffle'], [0, 1])

An ``Axis`` sets one dotted path of a point's settings (``model_args.skip_conn``, ``train.timesteps``). A
grid names its axes, the recipe (the value of every axis in the reference arm), and how arms are
formed: ``one_change`` (the recipe plus one arm per changed value, the paper's ablation table) or
``factorial`` (every combination). A ``Scale`` holds what does not vary: model, data, steps,
sampling and the quality metric. ``points()`` checks everything before anything is launched and
raises ``GridError`` listing what is valid.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from usm.data.datasets import missing_context
from usm.data.embedded import EMBEDDED
from usm.devices import default_device
from usm.files import point_name, safe_name
from usm.models.registry import MODELS
from usm.training.config import Config, ConfigError
from usm.training.sampling import SampleConfig, SampleError


class GridError(ValueError):
    """A grid, a value or a setting that cannot run; the message lists what is valid."""


@dataclass(frozen=True)
class Axis:
    """One axis of a grid: ``path`` is the setting its values set, dotted into a point's settings:
    ``model_args.skip_conn`` (a constructor argument), ``train.timesteps`` (a trainer field),
    ``model`` (the model's name) or ``data`` (a dataset's name, or a dict of it and trainer settings,
    e.g. a text dataset's tokens)."""
    name: str
    path: str
    values: dict  # shown value -> setting value

    def __post_init__(self):
        if not (self.path in ("model", "data") or self.section in ("model_args", "train") and self.key):
            raise GridError(f"axis {self.name!r}: path {self.path!r} is none of model, data, model_args.ARG or "
                            "train.FIELD")

    @property
    def section(self) -> str:
        return self.path.partition(".")[0]

    @property
    def key(self) -> str:
        return self.path.partition(".")[2]

    def apply(self, value, settings: dict) -> None:
        if value not in self.values:
            raise GridError(f"axis {self.name!r} has no value {value!r}; valid: {list(self.values)}")
        setting = self.values[value]
        if self.key:
            settings.setdefault(self.section, {})[self.key] = setting
        elif self.section == "data" and isinstance(setting, dict):  # a dataset with trainer settings (text)
            settings["data"] = setting["data"]
            settings["train"].update({k: v for k, v in setting.items() if k != "data"})
        else:
            settings[self.section] = setting


@dataclass(frozen=True)
class Scale:
    """Everything a point needs besides its axis values."""
    model: str
    data: str
    resolution: int
    train: dict
    num_samples: int
    sample_steps: int = 25
    metric: str = "pixel"  # "pixel" (the embedded data's metric suite: k-NN, shape features, SWD) or "fid"
    latent: str = "none"
    model_args: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)  # dataset name -> path (paper scale: given with --set)
    axis_values: dict = field(default_factory=dict)  # axis name -> values replacing the axis's own here
    seeds: tuple | None = None  # default seeds at this scale (else the grid's)
    eval_every: int | None = None  # learning curve: sample and score the run every N steps as it trains
    eval_samples: int | None = None  # samples per learning-curve evaluation (the first of the final ones too)


@dataclass(frozen=True)
class Point:
    study: str
    arm: str
    axes: dict
    seed: int
    settings: dict  # model, data, resolution, latent, model_args, train, sampling, metric

    @property
    def name(self) -> str:
        return point_name(self.arm, self.seed)

    def to_dict(self) -> dict:
        return {"study": self.study, "arm": self.arm, "axes": self.axes, "seed": self.seed, "settings": self.settings}


def trainer_config(settings: dict, directory: str | Path) -> Config:
    """The trainer's typed config for a point's settings (``train`` holds any trainer field by name);
    with a learning curve, the trainer pauses at every evaluation step. A latent study's points
    train from one latent cache per dataset in the study's folder (``latent_cache_path``): the VAE
    encodes each image once, not every step of every point."""
    latent = {} if settings["latent"] == "none" else {"latent_cache": str(latent_cache_path(settings, directory))}
    return Config.from_flat({"model": settings["model"], "data": settings["data"],
                             "resolution": settings["resolution"], "latent": settings["latent"],
                             "model_args": dict(settings["model_args"]), "run_dir": str(directory),
                             "pause_every": settings.get("eval_every"), "log_with": settings.get("log_with", "none"),
                             **latent, **settings["train"]})


def buildable(settings: dict) -> None:
    """ConfigError unless the point's model builds with its constructor arguments at its input size
    (on the meta device: no weights, milliseconds), so that a value its constructor refuses (an init
    rule, a depth, a patch the image does not divide) is refused before anything launches."""
    import torch

    side = settings["resolution"] // (8 if settings["latent"] != "none" else 1)  # SD-VAE's factor
    channels = 4 if settings["latent"] != "none" else 3
    try:
        with torch.device("meta"):
            MODELS[settings["model"]].build(input_size=side, in_channels=channels, **settings["model_args"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{settings['model']} cannot be built with {settings['model_args'] or 'its defaults'} "
                          f"at {side}x{side}: {exc}") from None


def latent_cache_path(settings: dict, directory: str | Path) -> Path:
    """``<study>/latents/<dataset>-<resolution>px-<vae>.npy``, shared by the study's points."""
    name = f"{safe_name(str(settings['data']))}-{settings['resolution']}px-{safe_name(str(settings['latent']))}.npy"
    return Path(directory).parent / "latents" / name


def sample_config(settings: dict, directory: str | Path) -> SampleConfig:
    """The sampler's config of a point: its final samples, seed 0 (every point draws from the same
    latents), in ``samples/final``, on the GPU when there is one; a text run's samples are
    conditioned on its training tokens (row i for image i)."""
    return SampleConfig(target=str(directory), num=settings["num_samples"], steps=settings["sample_steps"],
                        seed=0, out=str(Path(directory) / "samples" / "final"),
                        context=settings["train"].get("context"), device=default_device()).validate()


# Trainer fields a --set must not change: they decide what a point is, which its name, label and
# scoring would not follow (the field -> what decides it instead).
POINT_IDENTITY = {"data": "the dataset: the grid's axis or scale", "resolution": "the scale's image size",
                  "latent": "the scale's VAE", "context": "the dataset's text tokens", "cond": "the dataset"}
SETTINGS = ("num_samples", "sample_steps", "eval_every", "eval_samples", "log_with")  # what settings.NAME=V may set


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    axes: tuple[Axis, ...]
    recipe: dict
    scales: dict[str, Scale]
    seeds: tuple[int, ...] = (0,)
    arms: str = "one_change"  # or "factorial"

    def axis(self, name: str) -> Axis:
        for axis in self.axes:
            if axis.name == name:
                return axis
        raise GridError(f"grid {self.name!r} has no axis {name!r}; axes: {[a.name for a in self.axes]}")

    def scaled_axes(self, scale: Scale) -> tuple[Axis, ...]:
        return tuple(dataclasses.replace(a, values=scale.axis_values.get(a.name, a.values)) for a in self.axes)

    def combinations(self, axes: tuple[Axis, ...], factorial: bool) -> list[tuple[str, dict]]:
        if factorial or self.arms == "factorial":  # every combination, named by all its values
            names, values = [a.name for a in axes], [list(a.values) for a in axes]
            combos = [dict(zip(names, combo)) for combo in itertools.product(*values)]
            return [(",".join(f"{k}={v}" for k, v in c.items()), c) for c in combos]
        combos = [dict(self.recipe)] + [{**self.recipe, a.name: v} for a in axes for v in a.values
                                        if v != self.recipe[a.name]]
        return [(",".join(f"{k}={v}" for k, v in c.items() if self.recipe[k] != v) or "recipe", c) for c in combos]

    def points(self, scale: str = "smoke", seeds=None, factorial: bool = False,
               overrides: dict | None = None) -> list[Point]:
        if scale not in self.scales:
            raise GridError(f"grid {self.name!r} has no scale {scale!r}; valid: {sorted(self.scales)}")
        base = self.scales[scale]
        overrides = dict(overrides or {})
        datasets = {**base.datasets,
                    **{k.removeprefix("data."): v for k, v in overrides.items() if k.startswith("data.")}}
        train_overrides = {k.removeprefix("train."): v for k, v in overrides.items() if k.startswith("train.")}
        model_overrides = {k.removeprefix("model."): v for k, v in overrides.items() if k.startswith("model.")}
        top = {k.removeprefix("settings."): v for k, v in overrides.items() if k.startswith("settings.")}
        unknown = [k for k in overrides if not k.startswith(("data.", "train.", "model.", "settings."))]
        unknown += [f"settings.{k}" for k in top if k not in SETTINGS]
        unknown += [f"train.{k}" for k in train_overrides if k in ("model_args", "model")]
        if unknown:
            raise GridError(f"--set {unknown[0]}: settings are data.NAME=PATH (dataset paths), train.FIELD=VALUE, "
                            f"model.ARG=VALUE (a constructor argument of the grid's models, e.g. model.expand=1), "
                            f"or settings.NAME=VALUE with NAME one of {', '.join(SETTINGS)}")
        if "seed" in train_overrides:
            raise GridError("--set train.seed: a study's seeds are its points; use --seeds 0 1 2")
        identity = sorted(set(train_overrides) & set(POINT_IDENTITY))
        if identity:
            raise GridError(f"--set train.{identity[0]}: it changes what a point is ({POINT_IDENTITY[identity[0]]}) "
                            "while its name and scoring stay; pick the scale or the arm instead, or give a dataset's "
                            "folder with data.NAME=PATH")
        self._check_dataset_names(base, datasets, {k.removeprefix("data.") for k in overrides if k.startswith("data.")})
        for axis in self.axes:  # an axis sets its key in every point: a --set of it would be dropped
            given = {"model_args": model_overrides, "train": train_overrides}.get(axis.section, {})
            if axis.key in given:
                prefix = "model" if axis.section == "model_args" else "train"
                raise GridError(f"--set {prefix}.{axis.key}: the axis {axis.name!r} sets it in every point "
                                f"({', '.join(map(str, axis.values))}); pick arms with --only instead")
        axes = {a.name: a for a in self.scaled_axes(base)}
        points = []
        for arm, combo in self.combinations(tuple(axes.values()), factorial):
            settings = {"model": base.model, "data": base.data, "resolution": base.resolution, "latent": base.latent,
                        "model_args": {**base.model_args, **model_overrides},
                        "train": {**base.train, **train_overrides},
                        "num_samples": base.num_samples, "sample_steps": base.sample_steps, "metric": base.metric,
                        "eval_every": base.eval_every, "eval_samples": base.eval_samples,
                        **top}
            for name, value in combo.items():
                axes[name].apply(value, settings)
            if settings["data"] in datasets:
                settings["data"] = datasets[settings["data"]]
            context = settings["train"].get("context")
            if context in datasets:  # e.g. --set data.coco-tokens=/data/coco/tokens.npy
                settings["train"]["context"] = datasets[context]
            self._validate(settings, datasets)
            for seed in (seeds if seeds is not None else base.seeds or self.seeds):
                seeded = {**settings, "train": {**settings["train"], "seed": int(seed)}}
                points.append(Point(self.name, arm, combo, int(seed), seeded))
        return points

    def dataset_names(self, scale: Scale) -> set[str]:
        """Every dataset (and text-token) name the points of ``scale`` read: what data.NAME=PATH may set."""
        names = {scale.data, *scale.datasets}
        for axis in (a for a in self.scaled_axes(scale) if a.path == "data"):
            for value in axis.values.values():
                names |= {value["data"], value.get("context")} if isinstance(value, dict) else {value}
        return {n for n in names if n}

    def _check_dataset_names(self, scale: Scale, datasets: dict, given: set[str]) -> None:
        names = self.dataset_names(scale)
        by_path = ", ".join(sorted(names - set(EMBEDDED))) or "none (embedded data only)"
        for name in sorted(given):
            if name in EMBEDDED:
                raise GridError(f"--set data.{name}: {name} is embedded (it ships with the code) and has no path to "
                                f"set; datasets given by path here: {by_path}")
            if name not in names:
                raise GridError(f"--set data.{name}: the {self.name} grid's points at this scale read no dataset "
                                f"of that name; valid: {by_path}")

    def _validate(self, settings: dict, datasets: dict) -> None:
        if settings["model"] not in MODELS:
            raise GridError(f"unknown model {settings['model']!r}; registered: {', '.join(sorted(MODELS))}")
        for name, least in (("num_samples", 4), ("sample_steps", 1)):  # k-NN metrics need more than k = 3
            if not isinstance(settings[name], int) or isinstance(settings[name], bool) or settings[name] < least:
                raise GridError(f"settings.{name}={settings[name]!r}: a whole number >= {least}")
        data = settings["data"]
        if data not in EMBEDDED and not Path(data).is_dir():
            names = ", ".join(sorted(datasets)) or "none"
            raise GridError(f"dataset {data!r} is not a folder: give its path with --set data.{data}=/path/to/images "
                            f"(datasets of this grid: {names}; embedded: {', '.join(sorted(EMBEDDED))})")
        context = settings["train"].get("context")
        if missing_context(context):
            raise GridError(f"text tokens {context!r} are not a file: give them with --set data.{context}=PATH.npy "
                            "(an array (num_images, tokens, d_context), rows in the images' sorted file order)")
        every, count = settings.get("eval_every"), settings.get("eval_samples")
        if every is not None and (not isinstance(every, int) or every < 1):
            raise GridError(f"settings.eval_every={every!r}: a whole number of steps >= 1 (or leave it unset)")
        if every is not None and not (isinstance(count, int) and 4 <= count <= settings["num_samples"]):
            raise GridError(f"settings.eval_samples={count!r}: with eval_every, a whole number from 4 (k-NN metrics "
                            f"need more than k = 3) to settings.num_samples={settings['num_samples']}")
        try:
            trainer_config(settings, "results/<study>/<point>")
            sample_config(settings, "results/<study>/<point>")
            buildable(settings)
        except (ConfigError, SampleError) as exc:
            raise GridError(f"{self.name}: {exc} (from the grid's scale, or --set train.FIELD=VALUE or "
                            "model.ARG=VALUE)") from None
