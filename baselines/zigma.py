"""ZigMa (Hu et al., ECCV 2024): a DiT-style stack of Mamba blocks scanning zigzag paths.

    >>> import torch
    >>> from baselines.zigma import ZigMa
    >>> model = ZigMa(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=4)
    >>> model(torch.randn(2, 3, 8, 8), torch.rand(2)).shape
    torch.Size([2, 3, 8, 8])

docs/models.md. Tokens stay a flat sequence (no U shape, no MLP). Layer i reads the grid
along ZigMa's zigzag path i % 8: tokens are gathered into path order before the mixer and put
back after it (everything else is token-wise). Mamba's "add then norm" residual
(``residual += hidden; hidden = mixer(norm(residual))``) is computed in its equivalent pre-norm
form ``x = x + gate * mixer(modulate(RMSNorm(x)))``, closed by a final RMSNorm. The mixer:
in_proj D -> 2E (no bias), causal depthwise conv1d (kernel 4) along the path, SiLU, the selective
SSM with z gating, out_proj (no bias). Final: RMSNorm -> LayerNorm -> Linear (no modulation).

Not reproduced from the reference code: gradient clipping applied after the optimizer step (the
trainer clips before it), the per-layer positional list that was never registered as parameters,
ImportError fallbacks that fail, and ``device="cuda"`` at construction.

``init="released"`` (the default) is the released code's ``m_init``: Linear biases zeroed but dt's,
every ``out_proj`` at PyTorch's default over sqrt(depth), and a final Linear that is not zeroed
(``usm.layers.init``); ``init="default"`` keeps PyTorch's defaults and zeroes the final Linear.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn as nn

from usm import flops
from usm.layers.adaln import adaln_modulation, gated, modulate
from usm.layers.attention import TextBranch
from usm.layers.backbone import TokenStack
from usm.layers.causal_conv import causal_conv1d_silu
from usm.layers.conditioning import Conditioner
from usm.layers.embeddings import sincos_2d
from usm.layers.init import check_init, mamba_residual_init
from usm.layers.selective_ssm import SelectiveSSM
from usm.models.spec import family_table, records_config
from usm.scan_orders import ZIGMA_PATHS, inverse_order, permute, scan_order


class MambaMixer(nn.Module):
    """Mamba-1 mixer on a (B, L, D) sequence already in scan order, kept token-major (B, L, E) around
    the scan as USM's mixer is (the layout the linear layers write; no transposed copies for the scan).
    ``channel_major`` is mamba's own layout, (B, E, L) around the scan: the same numbers, its twin."""

    def __init__(self, hidden: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, scan_backend: str = "auto"):
        super().__init__()
        inner = expand * hidden
        self.in_proj = nn.Linear(hidden, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, kernel_size=d_conv, groups=inner, padding=d_conv - 1)
        self.ssm = SelectiveSSM(inner, d_state, dt_rank=math.ceil(hidden / 16), scan_backend=scan_backend)
        self.out_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).chunk(2, dim=-1)  # (B, L, E) each
        # sees positions <= t only; the conv reads a transposed view (a count-neutral copy inside conv1d)
        x = causal_conv1d_silu(x.transpose(1, 2), self.conv1d.weight.squeeze(1), self.conv1d.bias).transpose(1, 2)
        return self.out_proj(self.ssm.tokens(x, z=z))

    def channel_major(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
        x = causal_conv1d_silu(x, self.conv1d.weight.squeeze(1), self.conv1d.bias)
        return self.out_proj(self.ssm(x, z).transpose(1, 2))


class ZigMaBlock(nn.Module):
    def __init__(self, hidden: int, path: str, grid: tuple[int, int], text: bool = False, **mixer_kwargs):
        super().__init__()
        self.path, self.grid = path, grid
        self.norm = nn.RMSNorm(hidden, eps=1e-5)
        self.mixer = MambaMixer(hidden, **mixer_kwargs)
        self.text_branch = TextBranch(hidden) if text else None
        self.adaLN_modulation = adaln_modulation(hidden, 6 if text else 3)
        self.register_buffer("order", scan_order(path, *grid), persistent=False)
        self.register_buffer("inverse", inverse_order(path, *grid), persistent=False)

    def forward(self, x, c, context=None):
        """x: (B, L, D) tokens in row-major grid order."""
        mods = self.adaLN_modulation(c).chunk(3 if self.text_branch is None else 6, dim=-1)
        h = modulate(self.norm(x), mods[0], mods[1])
        x = x + gated(permute(self.mixer(permute(h, self.order, self.inverse, 1)), self.inverse, self.order, 1),
                      mods[2])
        if self.text_branch is not None:
            x = self.text_branch(x, context, *mods[3:])
        return x


@records_config
class ZigMa(TokenStack):
    def __init__(self, input_size: int = 32, patch_size: int = 1, in_channels: int = 4, hidden_size: int = 768,
                 depth: int = 24, num_classes: int = 0, learn_sigma: bool = False, pos_embed: str = "learned",
                 has_text: bool = False, d_context: int = 768, use_checkpoint: bool = False,
                 class_dropout_prob: float = 0.1, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 scan_backend: str = "auto", init: str = "released"):
        super().__init__()
        check_init(init)
        if pos_embed not in ("learned", "sincos", "none"):
            raise ValueError(f"pos_embed must be 'learned', 'sincos' or 'none', got {pos_embed!r}")
        grid = self.embed_tokens(input_size, patch_size, in_channels, hidden_size, learn_sigma, use_checkpoint)
        if pos_embed == "learned":  # from zeros, as ZigMa
            self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size))
        elif pos_embed == "sincos":
            self.pos_embed = nn.Parameter(sincos_2d(hidden_size, grid, grid)[None], requires_grad=False)
        else:
            self.pos_embed = None
        self.conditioner = Conditioner(hidden_size, num_classes, class_dropout_prob, d_context if has_text else 0)
        self.blocks = nn.ModuleList(
            ZigMaBlock(hidden_size, ZIGMA_PATHS[i % len(ZIGMA_PATHS)], (grid, grid), text=has_text, d_state=d_state,
                       expand=expand, d_conv=d_conv, scan_backend=scan_backend)
            for i in range(depth))
        self.norm_f = nn.RMSNorm(hidden_size, eps=1e-5)
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        if init == "released":  # m_init: Mamba's residual rule; the final Linear keeps its default weight
            mamba_residual_init(self, depth, keep=[b.mixer.ssm.dt_proj for b in self.blocks])
        else:  # zero output at the start, as DiT and USM
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def head(self, h, c):  # the final residual's RMSNorm, then LayerNorm -> Linear
        return self.linear(self.norm_final(self.norm_f(h)))

    def flop_formula(self, batch: int = 1, context_tokens: int = 77) -> dict[str, int]:
        """Analytic multiply-adds of one forward pass by category, plus 'total' (see usm.flops)."""
        cfg, count = self.config, Counter()
        hidden, tokens = cfg["hidden_size"], batch * (cfg["input_size"] // cfg["patch_size"]) ** 2
        inner, text = cfg["expand"] * hidden, cfg["has_text"]
        ctx = context_tokens if text else 0
        count += flops.conv(tokens, cfg["in_channels"], hidden, cfg["patch_size"] ** 2)
        count += flops.conditioning(batch, hidden, cfg["d_context"] if text else 0, ctx)
        per_block = (flops.linear(batch, hidden, (6 if text else 3) * hidden) + flops.norm(tokens, hidden, affine=True)
                     + flops.linear(tokens, hidden, 2 * inner)
                     # the causal conv computes L + d_conv - 1 outputs, of which the first L are kept
                     + flops.conv(tokens + batch * (cfg["d_conv"] - 1), inner, inner, cfg["d_conv"], inner)
                     + flops.selective_ssm(tokens, inner, cfg["d_state"], math.ceil(hidden / 16))
                     + flops.linear(tokens, inner, hidden))
        if text:
            per_block += flops.text_branch(batch, tokens // batch, ctx, hidden)
        for _ in range(cfg["depth"]):
            count += per_block
        count += flops.norm(tokens, hidden, affine=True) + flops.norm(tokens, hidden, affine=False)
        count += flops.linear(tokens, hidden, cfg["patch_size"] ** 2 * self.out_channels)
        return flops.with_total(count)


# --------------------------------------------------------------------------------------------------
# Sizes (docs/models.md): d_state 16, expand 2, d_conv 4; defaults a 32x32x4 latent, unconditional.

ZIGMA_MODELS = family_table(ZigMa, [  # sizes S, B, L at patches 1, 2, 4, one row each
    # T: USM-T's width, with the depth that gives USM-T/1's parameter count on 16x16x1 (0.49 M; within 1%)
    ("ZigMa-T/1", "tiny CPU variant: D=64, 10 layers, patch 1", dict(patch_size=1, hidden_size=64, depth=10)),
    ("ZigMa-T/2", "tiny CPU variant: D=64, 10 layers, patch 2", dict(patch_size=2, hidden_size=64, depth=10)),
    ("ZigMa-S/1", "D=368, 24 layers, patch 1", dict(patch_size=1, hidden_size=368, depth=24)),
    ("ZigMa-S/2", "D=368, 24 layers, patch 2", dict(patch_size=2, hidden_size=368, depth=24)),
    ("ZigMa-S/4", "D=368, 24 layers, patch 4", dict(patch_size=4, hidden_size=368, depth=24)),
    ("ZigMa-B/1", "D=768, 24 layers, patch 1", dict(patch_size=1, hidden_size=768, depth=24)),
    ("ZigMa-B/2", "D=768, 24 layers, patch 2", dict(patch_size=2, hidden_size=768, depth=24)),
    ("ZigMa-B/4", "D=768, 24 layers, patch 4", dict(patch_size=4, hidden_size=768, depth=24)),
    ("ZigMa-L/1", "D=1024, 48 layers, patch 1", dict(patch_size=1, hidden_size=1024, depth=48)),
    ("ZigMa-L/2", "D=1024, 48 layers, patch 2", dict(patch_size=2, hidden_size=1024, depth=48)),
    ("ZigMa-L/4", "D=1024, 48 layers, patch 4", dict(patch_size=4, hidden_size=1024, depth=48)),
])
