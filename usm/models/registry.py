"""Every model of the study by name: ``MODELS`` and ``build_model``.

    >>> from usm.models.registry import MODELS, build_model
    >>> model = build_model("USM-T/2", in_channels=3)
    >>> "USM-B/1" in MODELS and "ZigMa-B/1" in MODELS
    True

Names follow docs/conventions.md (``USM-B/1``, ``ZigMa-B/1``, ``DiT-B/2``; tiny CPU variants
carry ``-T``). Each family's table lives at the end of its module and is announced in
``pyproject.toml`` under the ``usm_bench.models`` entry-point group; this module merges the tables.
So ``usm`` never imports ``baselines`` (which is built on ``usm``) by name, and a new family
registers itself the same way, from any installed package. In a checkout that is not installed
(no package metadata), the families its ``pyproject.toml`` declares are read from there.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import torch.nn as nn

from usm.models.spec import ModelSpec

GROUP = "usm_bench.models"


PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _checkout_entry_points() -> list[EntryPoint]:
    """The group's entry points as this checkout's pyproject.toml declares them: what a plain checkout
    (not installed, so without package metadata) registers."""
    if not PYPROJECT.is_file():
        return []
    declared = tomllib.loads(PYPROJECT.read_text()).get("project", {}).get("entry-points", {}).get(GROUP, {})
    return [EntryPoint(name, value, GROUP) for name, value in declared.items()]


def _all_models() -> dict[str, ModelSpec]:
    found = {(ep.name, ep.value): ep for ep in entry_points(group=GROUP)}  # one per install location
    if not found:  # a plain checkout: its own families, from its pyproject.toml
        found = {(ep.name, ep.value): ep for ep in _checkout_entry_points()}
    if not found:
        raise RuntimeError(f"no model families are registered (entry-point group {GROUP!r}): "
                           "install usm-bench first, e.g. pip install -e . in the repository")
    merged: dict[str, ModelSpec] = {}
    for (_, value), ep in sorted(found.items()):
        table = ep.load()
        clash = {name for name in merged.keys() & table.keys() if merged[name] is not table[name]}
        if clash:
            raise RuntimeError(f"model names registered twice ({value}): {sorted(clash)}")
        merged.update(table)
    return dict(sorted(merged.items()))


MODELS: dict[str, ModelSpec] = _all_models()


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace its defaults (input_size, in_channels, ...)."""
    return model_spec(name).build(**overrides)
