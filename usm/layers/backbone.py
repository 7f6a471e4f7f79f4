"""Pieces of a model's forward shared by every family: checkpointed blocks, positions, token stacks.

    >>> import torch
    >>> from usm.layers.backbone import run_block
    >>> run_block(torch.nn.Identity(), True, torch.ones(2)).tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from usm.layers.embeddings import PatchEmbed, unpatchify


def run_block(block, use_checkpoint: bool, *args):
    """``block(*args)``, recomputed in the backward instead of stored when ``use_checkpoint``."""
    if use_checkpoint and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def add_positions(tokens: torch.Tensor, pos_embed, input_size: int) -> torch.Tensor:
    """tokens (B, L, D) + a (1, L, D) positional table, or a clear error for another resolution."""
    if pos_embed is None:
        return tokens
    if tokens.shape[1] != pos_embed.shape[1]:
        raise ValueError(f"the input gives {tokens.shape[1]} tokens but the model was built for input_size "
                         f"{input_size} ({pos_embed.shape[1]} tokens): build it with the input's size")
    return tokens + pos_embed.to(tokens.dtype)


class TokenStack(nn.Module):
    """The skeleton of a flat token-sequence model (DiT, ZigMa): patch embedding, positions, blocks
    called as ``block(h, c, context)``, then ``head(h, c)`` and unpatchify. Subclasses build
    ``conditioner``, ``patch_embed``, ``pos_embed`` (or None), ``blocks`` and define ``head``."""

    def embed_tokens(self, input_size: int, patch_size: int, in_channels: int, hidden_size: int,
                     learn_sigma: bool, use_checkpoint: bool) -> int:
        """Build the patch embedding and the output sizes every token stack shares; the grid side."""
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.patch_size, self.out_channels = patch_size, (2 if learn_sigma else 1) * in_channels
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(patch_size, in_channels, hidden_size)
        return input_size // patch_size

    def head(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) in [0, 1] (0 = noise, 1 = data), cond: None / class ids / context tokens."""
        c, context = self.conditioner(t, cond)
        grid = self.patch_embed(x)
        h = add_positions(grid.flatten(1, 2), self.pos_embed, self.config["input_size"])
        for block in self.blocks:
            h = run_block(block, self.use_checkpoint, h, c, context)
        h = self.head(h, c)
        return unpatchify(h.reshape(*grid.shape[:3], -1), self.patch_size, self.out_channels)
