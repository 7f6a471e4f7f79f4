"""Multi-scale sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al., 2018).

    >>> import torch
    >>> from analysis.metrics.swd import swd
    >>> a = torch.rand(16, 3, 16, 16) * 2 - 1
    >>> result = swd(a, a.flip(0), seed=0)
    >>> sorted(result), result["levels"][0] >= 0
    (['levels', 'mean', 'resolutions'], True)

No weights are needed, so it is always available (the CPU smoke studies use it). For each level
of a Laplacian pyramid (down to ``min_resolution``) it draws ``patches_per_image`` random
``patch`` x ``patch`` neighbourhoods per image, standardises the descriptors per channel (with
the pooled statistics of both sets, so a colour shift counts; Karras et al. use each set's own),
and estimates the sliced Wasserstein distance between the two sets with ``directions`` random
unit projections (``repeats`` times): sort both projections, average their absolute difference.
Values are reported x 1e3, per level (finest first) and averaged. Deterministic under ``seed``.
Images: float tensors in [-1, 1] (N, 3, H, W) or uint8 arrays (N, H, W, 3).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def as_tensor(images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype == torch.uint8:  # (N, H, W, 3) uint8 -> (N, 3, H, W) in [-1, 1]
        images = images.permute(0, 3, 1, 2).float() / 127.5 - 1
    return images.float()


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, min_resolution: int = 16) -> list[torch.Tensor]:
    levels = []
    while x.shape[-1] > min_resolution:
        down = _blur(x)[..., ::2, ::2]
        up = F.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(x - up)
        x = down
    levels.append(x)
    return levels


def _descriptors(level: torch.Tensor, patches: int, patch: int, gen: torch.Generator) -> torch.Tensor:
    """(images * patches, patch * patch, channels) raw neighbourhoods at random positions."""
    n, c, h, w = level.shape
    half = patch // 2
    ys = torch.randint(half, h - half, (n, patches), generator=gen)
    xs = torch.randint(half, w - half, (n, patches), generator=gen)
    offsets = torch.arange(-half, half + 1)
    rows = (ys[..., None] + offsets).reshape(n, patches, patch, 1)
    cols = (xs[..., None] + offsets).reshape(n, patches, 1, patch)
    batch = torch.arange(n)[:, None, None, None]
    desc = level.permute(0, 2, 3, 1)[batch, rows, cols]  # (n, patches, patch, patch, c)
    return desc.reshape(-1, patch * patch, c)


def _normalise(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the POOLED statistics of both sets. (Karras et al. normalise
    each set by its own statistics, which makes a global colour or contrast shift invisible; pooling
    keeps the distance symmetric and lets such a shift count.)"""
    both = torch.cat([a, b])
    mean, std = both.mean(dim=(0, 1)), both.std(dim=(0, 1)).clamp_min(1e-8)
    return ((a - mean) / std).flatten(1), ((b - mean) / std).flatten(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int, repeats: int, gen: torch.Generator) -> float:
    results = []
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], directions, generator=gen)
        dirs /= dirs.norm(dim=0, keepdim=True)
        # (directions, points): sorting contiguous rows is ~2x faster than sorting columns
        pa, pb = (dirs.T @ a.T).sort(dim=1).values, (dirs.T @ b.T).sort(dim=1).values
        results.append((pa - pb).abs().mean().item())
    return float(np.mean(results))


def swd(images_a, images_b, seed: int = 0, patches_per_image: int = 128, patch: int = 7,
        directions: int = 512, repeats: int = 4, min_resolution: int = 16) -> dict:
    a, b = as_tensor(images_a), as_tensor(images_b)
    if a.shape[1:] != b.shape[1:] or a.shape[0] != b.shape[0]:
        raise ValueError(f"SWD compares equal-sized sets of equal-sized images: {tuple(a.shape)} vs {tuple(b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    levels, resolutions = [], []
    for la, lb in zip(laplacian_pyramid(a, min_resolution), laplacian_pyramid(b, min_resolution)):
        da, db = _normalise(_descriptors(la, patches_per_image, patch, gen),
                            _descriptors(lb, patches_per_image, patch, gen))
        levels.append(sliced_wasserstein(da, db, directions, repeats, gen) * 1e3)
        resolutions.append(la.shape[-1])
    return {"levels": levels, "resolutions": resolutions, "mean": float(np.mean(levels))}
