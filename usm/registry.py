"""Every model of the study by name: ``MODELS`` and ``build_model``.

    >>> from usm.registry import MODELS, build_model
    >>> model = build_model("USM-T/2", in_channels=3)
    >>> "USM-B/1" in MODELS
    True

Names follow DESIGN.md section 2 (``USM-B/1``, ``ZigMa-B/1``, ``DiT-B/2``; tiny CPU variants
carry ``-T``). Each family's table lives at the end of its module; this module only merges them.
"""

from __future__ import annotations

import torch.nn as nn

from baselines import BASELINE_MODELS
from usm.model_spec import ModelSpec
from usm.models.usm import USM_MODELS


def _all_models() -> dict[str, ModelSpec]:
    tables = [USM_MODELS, BASELINE_MODELS]
    merged: dict[str, ModelSpec] = {}
    for table in tables:
        clash = merged.keys() & table.keys()
        if clash:
            raise RuntimeError(f"model names registered twice: {sorted(clash)}")
        merged.update(table)
    return merged


MODELS: dict[str, ModelSpec] = _all_models()


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace its defaults (input_size, in_channels, ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return MODELS[name].build(**overrides)
