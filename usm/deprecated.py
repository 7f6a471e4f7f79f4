"""Old spellings, accepted for one release with one warning each, and turned into the new ones.

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model_args({"skip_gate": True, "depth": 7}), value("timesteps", "log")
    ({'z_gate': False, 'depth': 7}, 'logit_normal')

- ``skip_gate=True`` (no z gate, a negative beside ``skip_conn``, which *adds* skip connections) is
  ``z_gate=False``; the gate is on by default, as before.
- ``timesteps="log"`` is ``"logit_normal"``: t = sigmoid(n) with n ~ N(0, 1), not a log-normal.
- A study's ``--set model.ARG`` is ``model_args.ARG`` (the one name of constructor arguments) and
  ``--set settings.NAME`` is ``NAME`` (a setting's path, as an axis names it).
- A scale's ``metric="swd"`` is ``"pixel"``: the suite scored on the embedded data (k-NN metrics on
  pixels and shape features, and SWD), which was named after its one metric that failed validation.

Run folders, checkpoints and study points written before the rename keep resuming: what they
stored passes through ``upgrade`` before it is compared. A study's arm named after the old axis
(``skip_gate=True``) is renamed (``z_gate=False``, folder and point.json) by the next launch of its
study (``experiments.launch.migrate_study``).
"""

from __future__ import annotations

import operator
import warnings

# old constructor argument -> (new argument, how the value maps)
MODEL_ARGS = {"skip_gate": ("z_gate", operator.not_)}
# setting -> {old value: new value}
VALUES = {"timesteps": {"log": "logit_normal"}, "metric": {"swd": "pixel"}}
# old --set prefix -> new one (constructor arguments are model_args everywhere; settings are paths)
SET_PREFIXES = {"model.": "model_args.", "settings.": ""}
# settings a point no longer stores -> the value every stored point held (profile-only points left the grids)
DROPPED = {"image_sizes": []}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is now spelled {new}; the old spelling is accepted until the next release",
                  FutureWarning, stacklevel=3)


def model_args(args: dict) -> dict:
    """``args`` with renamed constructor arguments under their new names (values mapped)."""
    out = {}
    for key, val in args.items():
        if key in MODEL_ARGS:
            new, convert = MODEL_ARGS[key]
            if isinstance(val, str):  # a command line's "true"/"false"
                val = {"true": True, "false": False}.get(val.strip().lower(), val)
            if isinstance(val, bool):
                _warn(f"{key}={val}", f"{new}={convert(val)}")
                key, val = new, convert(val)
        out[key] = val
    return out


def value(setting: str, val):
    """``val`` of a trainer setting in its new spelling."""
    renamed = VALUES.get(setting, {})
    if isinstance(val, str) and val in renamed:
        _warn(f"{setting} {val!r}", repr(renamed[val]))
        return renamed[val]
    return val


def set_path(key: str) -> str:
    """A study's ``--set`` key in its new spelling (``model.expand`` -> ``model_args.expand``,
    ``settings.num_samples`` -> ``num_samples``)."""
    for old, new in SET_PREFIXES.items():
        if key.startswith(old):
            _warn(f"--set {key}", f"{new}{key.removeprefix(old)}")
            return new + key.removeprefix(old)
    return key


def arm(name: str) -> str:
    """An arm's name (``recipe``, or ``axis=value`` pairs joined by commas) in the new spellings.

        >>> arm("skip_gate=True"), arm("skip_conn=False,timesteps=log"), arm("recipe")
        ('z_gate=False', 'skip_conn=False,timesteps=logit_normal', 'recipe')
    """
    parts = []
    for part in name.split(","):
        key, sep, val = part.partition("=")
        if sep:
            ((key, val),) = upgrade({key: {"True": True, "False": False}.get(val, val)}).items()
            part = f"{key}={val}"
        parts.append(part)
    return ",".join(parts)


def upgrade(stored):
    """A stored record (point.json's point, config.json's identity, a checkpoint's config) in the new
    spellings, silently: what it would hold if written now. Nested dicts and lists are walked."""
    if isinstance(stored, list):
        return [upgrade(v) for v in stored]
    if not isinstance(stored, dict):
        return stored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        renamed = model_args(stored)
        return {k: value(k, upgrade(v)) for k, v in renamed.items() if not (k in DROPPED and v == DROPPED[k])}
