"""A grid's scales side by side: what the model sees and predicts, the structure an ablation must
keep, the recipe, and how quality is measured.

    python -m analysis scales --grid ablations      # the Markdown table docs/ablations.md shows

Each row is one scale of the grid, read from its ``Scale`` (``experiments/grids/``) and from the
recipe's model built on the meta device at the size the trainer builds it for: SD-VAE latents
(side / 8, 4 channels) or the embedded data's own channels. For USM, ``USM.structure()`` gives the
token grid, the blocks per stage and how many numbers the bottleneck holds against the velocity
target; the smoke scale must keep that ratio at 1 or more (``tests/test_experiments.py``).
"""

from __future__ import annotations

import torch

from usm.provenance import stamp, stamp_line

QUALITY = {"pixel": "the k-NN metrics (pixels, shape features) and SWD", "fid": "FID"}


def model_input(settings) -> tuple[int, int] | None:
    """(side, channels) of what a model trained with ``settings`` (a scale's template) sees, or None
    where it depends on a dataset path."""
    from usm.data.datasets import open_dataset
    from usm.data.embedded import EMBEDDED

    if settings.latent != "none":
        return settings.resolution // 8, 4
    if settings.data in EMBEDDED:
        return settings.resolution, open_dataset(settings.data, settings.resolution).channels
    return None


def scale_row(name: str, scale, recipe_args: dict, grid_seeds: tuple) -> list[str]:
    from usm.models.registry import build_model

    seeds, s = len(scale.seeds or grid_seeds), scale.settings
    shape = model_input(s)
    args = {**recipe_args, **s.model_args}
    structure, config = {}, {}
    if shape is not None:
        with torch.device("meta"):
            model = build_model(s.model, input_size=shape[0], in_channels=shape[1], **args)
        structure = model.structure() if hasattr(model, "structure") else {}
        config = model.config
    t = s.train
    data = s.data + ("" if s.latent == "none" else f" through {s.latent}") + f" at {s.resolution} px"
    seen = f"{shape[0]}x{shape[0]}x{shape[1]}" if shape else "-"
    if structure:
        grid = f"patch {structure['patch']}, {structure['tokens']:,} tokens"
        depth = f"{structure['depth']} ({structure['blocks_per_stage']} a stage)"
        bottleneck = f"{structure['bottleneck']}, {structure['bottleneck_over_target']:.2g}x the target"
    else:
        grid = depth = bottleneck = "-"
    mixer = (f"expand {config['expand']}, {config['d_state']} states" if "expand" in config else "-")
    trained = all(key in t for key in ("batch_size", "max_steps", "lr", "ema_decay"))
    recipe = (f"batch {t['batch_size']}, {t['max_steps']:,} steps, lr {t['lr']:g}, EMA {t['ema_decay']:g}"
              if trained else "-")
    curve = f", a curve point every {s.eval_every:,} steps" if s.eval_every else ""
    quality = f"{QUALITY[s.metric]} on {s.num_samples:,} samples, {s.sample_steps} Euler steps{curve}"
    return [f"`{name}`", s.model, data, seen, grid, depth, bottleneck, mixer,
            recipe, quality, str(seeds)]


def render(grid) -> str:
    """The Markdown table of ``grid``'s (a ``Grid``) scales, stamped with the grid's code."""
    from usm.markdown import table as markdown

    recipe_args = {axis.key: axis.values[grid.recipe[axis.name]] for axis in grid.axes
                   if axis.section == "model_args" and axis.name in grid.recipe}
    header = ["scale", "model", "data", "model sees", "tokens", "depth", "bottleneck", "mixer", "recipe",
              "quality", "seeds"]
    rows = [scale_row(name, scale, recipe_args, grid.seeds) for name, scale in grid.scales.items()]
    return markdown(header, rows) + "\n\n" + stamp_line(stamp(f"grid:{grid.name}"))
