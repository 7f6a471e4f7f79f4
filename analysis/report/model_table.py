"""Every registered model's parameter count, as the README's model table shows it.

    python -m analysis models                 # the Markdown table (the README's generated block)

Counted on the meta device (nothing is allocated), at each model's defaults: a 32x32x4 latent (a
256x256 image through SD-VAE), unconditional, ``learn_sigma`` off; plus the smoke studies' models
at the size and with the constructor arguments their grids train them with.

    >>> parameters("USM-T/1", input_size=16, in_channels=1)
    491521
"""

from __future__ import annotations

import re

import torch

from usm.markdown import table as markdown
from usm.models.registry import MODELS, build_model
from usm.provenance import stamp, stamp_line

SIZE_ORDER = ("T", "S", "B", "L", "XL")  # DiT's size names, smallest first


def parameters(name: str, **model_args) -> int:
    with torch.device("meta"):
        model = build_model(name, **model_args)
    return sum(p.numel() for p in model.parameters())


def _order(name: str) -> tuple:
    size, patch = re.match(r"[^-]+-([A-Z]+)(?:/(\d+))?", name).groups()
    return SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER), int(patch or 0)


def _shape(config: dict) -> str:
    """The size arguments that tell a family's models apart: (hidden, depth) where the model has them."""
    sizes = [config[key] for key in ("hidden_size", "depth") if key in config]
    return f" ({', '.join(map(str, sizes))})" if sizes else ""


def smoke_models(grids) -> list[tuple[str, str, dict]]:
    """(grid, model, model_args) of each grid's smoke scale, at the data's size and channels."""
    from usm.data.datasets import open_dataset
    from usm.data.embedded import EMBEDDED

    rows = []
    for grid in grids:
        smoke = grid.scales["smoke"].settings if "smoke" in grid.scales else None
        if smoke is None or smoke.data not in EMBEDDED:
            continue
        channels = open_dataset(smoke.data, smoke.resolution).channels  # what the trainer builds the model for
        size = dict(input_size=smoke.resolution, in_channels=channels)
        rows.append((grid.name, smoke.model, size, dict(smoke.model_args)))
    return rows


def render(grids=()) -> str:
    """Every registered model's parameters, then the smoke models of ``grids`` (``Grid`` objects)."""
    families: dict[str, list[str]] = {}
    for name in sorted(MODELS, key=_order):
        spec = MODELS[name]
        families.setdefault(spec.family, []).append(f"{name}{_shape(spec.defaults)}: {parameters(name):,}")
    rows = [[family, " · ".join(entries)] for family, entries in sorted(families.items())]
    seen = set()
    for grid, model, size, args in smoke_models(grids):
        key = (model, tuple(size.items()), tuple(sorted(args.items())))
        if key in seen:
            continue
        seen.add(key)
        side, channels = size["input_size"], size["in_channels"]
        text = f"{model} on {side}x{side}x{channels}: {parameters(model, **size):,}"
        if args:
            named = ", ".join(f"{k}={v}" for k, v in args.items())
            text += f"; with `{named}`: {parameters(model, **size, **args):,}"
        rows.append([f"the `{grid}` grid's smoke model", text])
    return markdown(["family", "name (hidden, depth): parameters"], rows) + "\n\n" + stamp_line(stamp("models"))
