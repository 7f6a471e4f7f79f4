"""Every model of the study by name: ``MODELS`` and ``build_model``.

    >>> from usm.models.registry import MODELS, build_model
    >>> model = build_model("USM-T/2", in_channels=3)
    >>> "USM-B/1" in MODELS and "ZigMa-B/1" in MODELS
    True

Names follow docs/conventions.md (``USM-B/1``, ``ZigMa-B/1``, ``DiT-B/2``; tiny CPU variants
carry ``-T``). Each family's table lives at the end of its module and is announced in
``pyproject.toml`` under the ``usm_bench.models`` entry-point group; this module merges the tables
of the installed packages. Entry points rather than imports, for two readers: the trainer in ``usm``
(``python -m usm.train --model ZigMa-B/1``) builds the baselines' models, and ``usm`` may not import
``baselines``, which is built on it; and a family in another package (your own model, say) registers
from its own ``pyproject.toml`` without editing this repository.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import torch.nn as nn

from usm.models.spec import ModelSpec

GROUP = "usm_bench.models"


def _all_models() -> dict[str, ModelSpec]:
    found = {(ep.name, ep.value): ep for ep in entry_points(group=GROUP)}  # one per install location
    if not found:
        raise RuntimeError(f"no model families are registered (entry-point group {GROUP!r}): "
                           "install usm-bench first (pip install -e . in the repository): a checkout "
                           "that was never installed has no package metadata to announce them")
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


def build_model(name: str, **model_args) -> nn.Module:
    """Build a registered model; ``model_args`` replace its defaults (input_size, in_channels, ...)."""
    return model_spec(name).build(**model_args)
