"""DiT (Peebles & Xie, ICCV 2023): the adaLN-Zero transformer baseline.

    >>> import torch
    >>> from baselines.dit import DiT
    >>> model = DiT(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=2)
    >>> model(torch.randn(2, 3, 8, 8), torch.rand(2)).shape
    torch.Size([2, 3, 8, 8])

docs/models.md: frozen 2D sin-cos positions, blocks of adaLN-Zero self-attention (torch's
scaled_dot_product_attention) and a GELU(tanh) MLP of ratio 4, the shared final layer. With
``learn_sigma`` the output has 2C channels (the rectified-flow trainer uses the first C).
"""

from __future__ import annotations

from collections import Counter

import torch.nn as nn

from usm import flops
from usm.layers.adaln import FinalLayer, adaln_modulation, gated, modulate
from usm.layers.attention import SelfAttention, TextBranch
from usm.layers.backbone import TokenStack
from usm.layers.conditioning import Conditioner
from usm.layers.embeddings import sincos_2d
from usm.models.spec import family_table, records_config


class DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, text: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_hidden, hidden))
        self.text_branch = TextBranch(hidden) if text else None
        self.adaLN_modulation = adaln_modulation(hidden, 9 if text else 6)

    def forward(self, x, c, context=None):
        mods = self.adaLN_modulation(c).chunk(6 if self.text_branch is None else 9, dim=-1)
        x = x + gated(self.attn(modulate(self.norm1(x), mods[0], mods[1])), mods[2])
        if self.text_branch is not None:
            x = self.text_branch(x, context, *mods[6:])
        return x + gated(self.mlp(modulate(self.norm2(x), mods[3], mods[4])), mods[5])


@records_config
class DiT(TokenStack):
    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, num_classes: int = 0,
                 learn_sigma: bool = False, has_text: bool = False, d_context: int = 768,
                 use_checkpoint: bool = False, class_dropout_prob: float = 0.1):
        super().__init__()
        grid = self.embed_tokens(input_size, patch_size, in_channels, hidden_size, learn_sigma, use_checkpoint)
        self.pos_embed = nn.Parameter(sincos_2d(hidden_size, grid, grid)[None], requires_grad=False)
        self.conditioner = Conditioner(hidden_size, num_classes, class_dropout_prob, d_context if has_text else 0)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, has_text) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * self.out_channels)
        for block in self.blocks:  # DiT's basic init: xavier-uniform Linear weights, zero biases
            for module in [*block.attn.modules(), *block.mlp.modules()]:
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

    def head(self, h, c):
        return self.final_layer(h, c)

    def flop_formula(self, batch: int = 1, context_tokens: int = 77) -> dict[str, int]:
        """Analytic multiply-adds of one forward pass by category, plus 'total' (see usm.flops)."""
        cfg, count = self.config, Counter()
        hidden, per_sample = cfg["hidden_size"], (cfg["input_size"] // cfg["patch_size"]) ** 2
        tokens, text, mlp = batch * per_sample, cfg["has_text"], int(cfg["hidden_size"] * cfg["mlp_ratio"])
        ctx = context_tokens if text else 0
        count += flops.conv(tokens, cfg["in_channels"], hidden, cfg["patch_size"] ** 2)
        count += flops.conditioning(batch, hidden, cfg["d_context"] if text else 0, ctx)
        per_block = (flops.linear(batch, hidden, (9 if text else 6) * hidden)
                     + flops.norm(2 * tokens, hidden, affine=False)
                     + flops.linear(tokens, hidden, 3 * hidden) + flops.attention(tokens, per_sample, hidden)
                     + flops.linear(tokens, hidden, hidden)
                     + flops.linear(tokens, hidden, mlp) + flops.linear(tokens, mlp, hidden))
        if text:
            per_block += flops.text_branch(batch, per_sample, ctx, hidden)
        for _ in range(cfg["depth"]):
            count += per_block
        count += flops.norm(tokens, hidden, affine=False) + flops.linear(batch, hidden, 2 * hidden)
        count += flops.linear(tokens, hidden, cfg["patch_size"] ** 2 * self.out_channels)
        return flops.with_total(count)


# --------------------------------------------------------------------------------------------------
# Sizes (docs/models.md): hidden x depth (heads); patches 2, 4, 8. Defaults: a 32x32x4 latent,
# unconditional; DiT's ImageNet setting is build_model("DiT-XL/2", num_classes=1000, learn_sigma=True).

# DiT's published forward GFLOPs at 256x256 (a 32x32x4 latent, batch 1, the ImageNet setting: 1,000
# classes, learn_sigma), from Peebles and Xie (2023); the FLOP counter and the formula are tested on them.
PUBLISHED_GFLOPS = {"DiT-S/2": 6.06, "DiT-B/2": 23.01, "DiT-L/2": 80.71, "DiT-XL/2": 118.64,
                    "DiT-B/4": 5.56, "DiT-XL/4": 29.05, "DiT-XL/8": 7.39}

DIT_MODELS = family_table(DiT, [  # DiT's sizes (S, B, L, XL) at patches 2, 4, 8, one row each
    # T: USM-T's width, with the depth that gives USM-T/1's parameter count on 16x16x1 (0.49 M; within 2%)
    ("DiT-T/2", "tiny CPU variant: D=64, 6 layers, 4 heads", dict(patch_size=2, hidden_size=64, depth=6, num_heads=4)),
    ("DiT-S/2", "D=384, 12 layers, 6 heads, patch 2", dict(patch_size=2, hidden_size=384, depth=12, num_heads=6)),
    ("DiT-S/4", "D=384, 12 layers, 6 heads, patch 4", dict(patch_size=4, hidden_size=384, depth=12, num_heads=6)),
    ("DiT-S/8", "D=384, 12 layers, 6 heads, patch 8", dict(patch_size=8, hidden_size=384, depth=12, num_heads=6)),
    ("DiT-B/2", "D=768, 12 layers, 12 heads, patch 2", dict(patch_size=2, hidden_size=768, depth=12, num_heads=12)),
    ("DiT-B/4", "D=768, 12 layers, 12 heads, patch 4", dict(patch_size=4, hidden_size=768, depth=12, num_heads=12)),
    ("DiT-B/8", "D=768, 12 layers, 12 heads, patch 8", dict(patch_size=8, hidden_size=768, depth=12, num_heads=12)),
    ("DiT-L/2", "D=1024, 24 layers, 16 heads, patch 2", dict(patch_size=2, hidden_size=1024, depth=24, num_heads=16)),
    ("DiT-L/4", "D=1024, 24 layers, 16 heads, patch 4", dict(patch_size=4, hidden_size=1024, depth=24, num_heads=16)),
    ("DiT-L/8", "D=1024, 24 layers, 16 heads, patch 8", dict(patch_size=8, hidden_size=1024, depth=24, num_heads=16)),
    ("DiT-XL/2", "D=1152, 28 layers, 16 heads, patch 2", dict(patch_size=2, hidden_size=1152, depth=28, num_heads=16)),
    ("DiT-XL/4", "D=1152, 28 layers, 16 heads, patch 4", dict(patch_size=4, hidden_size=1152, depth=28, num_heads=16)),
    ("DiT-XL/8", "D=1152, 28 layers, 16 heads, patch 8", dict(patch_size=8, hidden_size=1152, depth=28, num_heads=16)),
])
