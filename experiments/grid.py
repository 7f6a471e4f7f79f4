"""Grids as data: axes, arms, seeds and two scales, expanded into validated points.

    >>> from experiments.grids import GRIDS
    >>> points = GRIDS["ablations"].points("smoke")
    >>> list(dict.fromkeys(p.arm for p in points))[:3], sorted({p.seed for p in points})
    (['recipe', 'skip_conn=False', 'upsampler=pixelshuffle'], [0, 1])

An ``Axis`` sets one path of a point's typed settings (``experiments.settings``:
``model_args.skip_conn``, ``train.timesteps``, ``model``), the way ``--set PATH=VALUE`` does. A grid
names its axes, the recipe (the value of every axis in the reference arm), and how arms are formed:
``one_change`` (the recipe plus one arm per changed value, the paper's ablation table) or
``factorial`` (every combination). A ``Scale`` holds what does not vary: a template of the points'
settings (model, data, steps, sampling, the quality metric), their seeds and dataset paths.
``points()`` checks everything before anything is launched and raises ``GridError`` listing what is
valid.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from experiments.settings import Settings, SettingsError
from usm import deprecated
from usm.data.datasets import missing_context
from usm.data.embedded import EMBEDDED
from usm.files import point_name
from usm.models.registry import MODELS
from usm.training.config import ConfigError
from usm.training.sampling import SampleError

TEMPLATE = Settings(model="", data="", resolution=0, train={}, num_samples=0)  # checks paths


class GridError(ValueError):
    """A grid, a value or a setting that cannot run; the message lists what is valid."""


class Several(dict):
    """An axis value that sets several settings at once, by path: a text dataset with its tokens,
    ``Several({"data": "coco", "train.context": "coco-tokens", "train.cond": "text"})``."""


def check_path(path: str, where: str) -> None:
    try:
        TEMPLATE.set(path, None)
    except SettingsError as exc:
        raise GridError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Axis:
    """One axis of a grid: ``path`` is the setting its values set (``model_args.skip_conn``,
    ``train.timesteps``, ``model``, ``data``: see ``experiments.settings``); a value given as
    ``Several`` sets several paths at once."""
    name: str
    path: str
    values: dict  # shown value -> setting value

    def __post_init__(self):
        check_path(self.path, f"axis {self.name!r}")
        for value in self.values.values():
            for path in (value if isinstance(value, Several) else {}):
                check_path(path, f"axis {self.name!r}")

    @property
    def section(self) -> str:
        return self.path.partition(".")[0]

    @property
    def key(self) -> str:
        return self.path.partition(".")[2]

    def paths(self) -> set[str]:
        """Every path a value of this axis sets."""
        return {self.path, *(p for v in self.values.values() if isinstance(v, Several) for p in v)}

    def apply(self, value, settings: Settings) -> Settings:
        if value not in self.values:
            raise GridError(f"axis {self.name!r} has no value {value!r}; valid: {list(self.values)}")
        setting = self.values[value]
        for path, part in (setting.items() if isinstance(setting, Several) else [(self.path, setting)]):
            settings = settings.set(path, part)
        return settings


@dataclass(frozen=True)
class Scale:
    """What a grid's points share at one scale: the template of their settings, and the seeds,
    dataset paths and axis values used here."""
    settings: Settings
    seeds: tuple | None = None  # default seeds at this scale (else the grid's)
    datasets: dict = field(default_factory=dict)  # dataset name -> path (paper scale: given with --set)
    axis_values: dict = field(default_factory=dict)  # axis name -> values replacing the axis's own here


@dataclass(frozen=True)
class Point:
    study: str
    arm: str
    axes: dict
    seed: int
    settings: Settings

    @property
    def name(self) -> str:
        return point_name(self.arm, self.seed)

    def to_dict(self) -> dict:
        return {"study": self.study, "arm": self.arm, "axes": self.axes, "seed": self.seed,
                "settings": self.settings.to_dict()}


# What a --set must not change: what a point is, which its name, label and scoring would not follow
# (the path -> what decides it instead).
FIXED = {"model": "the grid's axis or scale", "data": "the grid's axis or scale: give a dataset's folder with "
         "data.NAME=PATH", "resolution": "the scale", "latent": "the scale's VAE", "metric": "the scale",
         "train.data": "the dataset", "train.resolution": "the scale's image size", "train.latent": "the scale's VAE",
         "train.context": "the dataset's text tokens", "train.cond": "the dataset", "train.model": "the grid",
         "train.model_args": "model_args.ARG", "train.seed": "the study's seeds: use --seeds 0 1 2",
         "train.run_dir": "the point's folder", "train.pause_every": "eval_every", "train.log_with": "log_with",
         "train.latent_cache": "the study's latent cache"}
# Trainer fields that end one invocation early or change how it starts: a point trains to its end and
# resumes when its job is requeued (the path -> what to use instead).
PER_INVOCATION = {"train.time_budget": "the job's --time", "train.max_steps_per_invocation": "the job's --time",
                  "train.dry_run": "run.py --dry-run", "train.from_scratch": "removing the point's folder"}


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

    def points(self, scale: str = "smoke", seeds=None, factorial: bool = False, sets: dict | None = None
               ) -> list[Point]:
        """The points of ``scale``; ``sets`` (``--set``) maps a setting's path to a value for every
        point, or ``data.NAME`` to a dataset's folder."""
        if scale not in self.scales:
            raise GridError(f"grid {self.name!r} has no scale {scale!r}; valid: {sorted(self.scales)}")
        base = self.scales[scale]
        sets = dict(sets or {})
        given = {k.removeprefix("data."): v for k, v in sets.items() if k.startswith("data.")}
        self._check_dataset_names(base, set(given))
        datasets = {**base.datasets, **given}
        template = base.settings
        for key, value in sets.items():
            if not key.startswith("data."):
                template = self._set(template, deprecated.set_path(key), value)
        axes = {a.name: a for a in self.scaled_axes(base)}
        points = []
        for arm, combo in self.combinations(tuple(axes.values()), factorial):
            settings = template
            for name, value in combo.items():
                settings = axes[name].apply(value, settings)
            if settings.data in datasets:
                settings = settings.set("data", datasets[settings.data])
            if settings.train.get("context") in datasets:  # e.g. --set data.coco-tokens=/data/coco/tokens.npy
                settings = settings.set("train.context", datasets[settings.train["context"]])
            self._validate(settings, datasets)
            for seed in (seeds if seeds is not None else base.seeds or self.seeds):
                points.append(Point(self.name, arm, combo, int(seed), settings.set("train.seed", int(seed))))
        return points

    def _set(self, settings: Settings, path: str, value) -> Settings:
        """``settings`` with one ``--set`` applied; GridError for a path that names no setting, that
        decides what a point is, or that an axis sets in every point (the --set would be dropped)."""
        if path in FIXED:
            raise GridError(f"--set {path}: it changes what a point is, while its name and scoring stay; "
                            f"{FIXED[path]} decides it")
        if path in PER_INVOCATION:
            raise GridError(f"--set {path}: it stops or restarts one invocation of the trainer, while a point "
                            f"trains to its end and resumes when requeued; use {PER_INVOCATION[path]}")
        for axis in self.axes:
            if path in axis.paths():
                raise GridError(f"--set {path}: the axis {axis.name!r} sets it in every point "
                                f"({', '.join(map(str, axis.values))}); pick arms with --only instead")
        try:
            return settings.set(path, value)
        except SettingsError as exc:
            raise GridError(f"--set {path}: {exc}; or data.NAME=PATH (a dataset's folder)") from None

    def dataset_names(self, scale: Scale) -> set[str]:
        """Every dataset (and text-token) name the points of ``scale`` read: what data.NAME=PATH may set."""
        names = {scale.settings.data, scale.settings.train.get("context"), *scale.datasets}
        for axis in self.scaled_axes(scale):
            for value in axis.values.values():
                sets = value if isinstance(value, Several) else {axis.path: value}
                names |= {sets.get("data"), sets.get("train.context")}
        return {n for n in names if n}

    def _check_dataset_names(self, scale: Scale, given: set[str]) -> None:
        names = self.dataset_names(scale)
        by_path = ", ".join(sorted(names - set(EMBEDDED))) or "none (embedded data only)"
        for name in sorted(given):
            if name in EMBEDDED:
                raise GridError(f"--set data.{name}: {name} is embedded (it ships with the code) and has no path to "
                                f"set; datasets given by path here: {by_path}")
            if name not in names:
                raise GridError(f"--set data.{name}: the {self.name} grid's points at this scale read no dataset "
                                f"of that name; valid: {by_path}")

    def _validate(self, s: Settings, datasets: dict) -> None:
        if s.model not in MODELS:
            raise GridError(f"unknown model {s.model!r}; registered: {', '.join(sorted(MODELS))}")
        for name, least in (("num_samples", 4), ("sample_steps", 1)):  # k-NN metrics need more than k = 3
            value = s.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise GridError(f"{name}={value!r}: a whole number >= {least}")
        if s.data not in EMBEDDED and not Path(s.data).is_dir():
            names = ", ".join(sorted(datasets)) or "none"
            raise GridError(f"dataset {s.data!r} is not a folder: give its path with --set data.{s.data}=/path/to/"
                            f"images (datasets of this grid: {names}; embedded: {', '.join(sorted(EMBEDDED))})")
        context = s.train.get("context")
        if missing_context(context):
            raise GridError(f"text tokens {context!r} are not a file: give them with --set data.{context}=PATH.npy "
                            "(an array (num_images, tokens, d_context), rows in the images' sorted file order)")
        every, count = s.eval_every, s.eval_samples
        if every is not None and (not isinstance(every, int) or every < 1):
            raise GridError(f"eval_every={every!r}: a whole number of steps >= 1 (or leave it unset)")
        if every is not None and not (isinstance(count, int) and 4 <= count <= s.num_samples):
            raise GridError(f"eval_samples={count!r}: with eval_every, a whole number from 4 (k-NN metrics "
                            f"need more than k = 3) to num_samples={s.num_samples}")
        try:
            s.trainer_config("results/<study>/<point>")
            s.sample_config("results/<study>/<point>")
            s.check_buildable()
        except (ConfigError, SampleError) as exc:
            raise GridError(f"{self.name}: {exc} (from the grid's scale, or --set train.FIELD=VALUE or "
                            "model_args.ARG=VALUE)") from None
