"""Patch, position, time and label embeddings (DiT conventions, shared by every model).

    >>> import torch
    >>> from usm.layers.embeddings import TimestepEmbedder, sincos_2d
    >>> TimestepEmbedder(64)(torch.rand(3)).shape
    torch.Size([3, 64])
    >>> sincos_2d(8, 2, 3).shape
    torch.Size([6, 8])
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(len(positions), dim): first half sin, second half cos, frequencies 1/10000^(2i/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double().reshape(-1, 1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2D sin-cos positions (H*W, dim) in row-major token order, as in DiT/MAE:
    the first half of the channels encodes the column, the second half the row."""
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> ``hidden`` channels: (B, C, H, W) -> (B, H/p, W/p, hidden)."""

    def __init__(self, patch_size: int, in_channels: int, hidden: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden, kernel_size=patch_size, stride=patch_size)
        nn.init.xavier_uniform_(self.proj.weight.view(hidden, -1))  # as a Linear, like DiT
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"input {height}x{width} is not divisible by the patch size {self.patch_size}")
        return self.proj(x).permute(0, 2, 3, 1)


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(B, h, w, p*p*C) -> (B, C, h*p, w*p); the inverse of a p x p patching with (p, p, C) order."""
    batch, h, w, _ = tokens.shape
    x = tokens.reshape(batch, h, w, patch_size, patch_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, h * patch_size, w * patch_size)


class TimestepEmbedder(nn.Module):
    """t -> 256-d sinusoidal features of ``t * time_scale`` -> MLP(SiLU) -> hidden.

    The models take t in [0, 1] (docs/conventions.md); ``time_scale=1000`` reproduces the
    DiT/USM convention of embedding diffusion step numbers."""

    def __init__(self, hidden: int, freq_dim: int = 256, time_scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.time_scale = freq_dim, time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def features(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * self.time_scale)[:, None] * freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class ids -> hidden. With ``dropout_prob > 0`` a null class (id ``num_classes``) exists;
    training replaces labels by it with that probability (classifier-free guidance)."""

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float):
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + (dropout_prob > 0), hidden)
        nn.init.normal_(self.embedding_table.weight, std=0.02)

    @property
    def null_class(self) -> int:
        if self.dropout_prob <= 0:
            raise ValueError("this model has no null class (class_dropout_prob=0): it cannot do guidance")
        return self.num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        valid = self.embedding_table.num_embeddings  # the null class included, when there is one
        if labels.numel() and (labels.min() < 0 or labels.max() >= valid):
            low, high = labels.min().item(), labels.max().item()
            raise ValueError(f"class ids must lie in [0, {valid - 1}], got {low}..{high}")
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)
