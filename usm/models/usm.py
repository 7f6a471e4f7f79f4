"""U-Shape Mamba (Ergasti et al., CVPR 2025): SS2D blocks in a 3-stage U-Net on a token grid.

    >>> import torch
    >>> from usm.models import USM
    >>> model = USM(input_size=16, patch_size=2, in_channels=3, hidden_size=32, depth=7)
    >>> model(torch.randn(2, 3, 16, 16), torch.rand(2)).shape
    torch.Size([2, 3, 16, 16])

Layout (docs/models.md), depth = 2 * 3k + 1: three encoder stages of k blocks, each followed
by a stride-2 conv that halves H and W; one middle block; three decoder stages of k blocks, each
starting with a 2x upsampler. Every encoder block output is pushed on a stack and each decoder
block pops one of the same resolution (used through Linear(2D -> D) with ``skip_conn``).
Block b scans along USM scheme (b % 8): encoder block i -> i, middle -> depth // 2, decoder
block i -> depth // 2 + 1 + i.

Fixes of the reference implementation (docs/models.md): PixelShuffle upsampling works
(``use_convtranspose=False``; the reference crashes); ``z_gate=False`` (no z gate) applies to every block, the
middle one included; the unused ``ln_1`` norms and the unconditional ``y_embedder`` are not built;
XL/1 builds (see ``usm.models.registry``).

``init="released"`` (the default) starts where the released code starts: xavier-uniform weights
and zero biases on every Linear but the mixer's x/dt projections, the timestep MLP, adaLN and the
final layer (``usm.layers.init``); ``init="default"`` keeps PyTorch's defaults for those Linears.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn as nn

from usm import flops
from usm.layers.adaln import FinalLayer, adaln_modulation, gated, modulate
from usm.layers.attention import TextBranch
from usm.layers.backbone import add_positions, run_block
from usm.layers.conditioning import Conditioner
from usm.layers.embeddings import PatchEmbed, sincos_2d, unpatchify
from usm.layers.init import check_init, xavier_linears
from usm.models.spec import family_table, records_config
from usm.models.ss2d import SS2D


class PixelShuffleUp(nn.Sequential):
    """k x k conv to 4D channels + PixelShuffle(2); k = 3 by default. With k = 1 it is exactly the
    2x2 stride-2 ConvTranspose up to bias sharing (tests/test_usm_model.py maps one onto the other),
    so the ablation compares a rule that sees a coarse token's neighbours with one that does not;
    ``groups`` narrows the conv to the ConvTranspose's parameter count (docs/control.md)."""

    def __init__(self, hidden: int, kernel: int = 3, groups: int = 1):
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"upsample_kernel must be an odd number >= 1 (same-size padding), got {kernel}")
        if groups < 1 or hidden % groups:
            raise ValueError(f"upsample_groups={groups} must divide hidden_size={hidden}")
        super().__init__(nn.Conv2d(hidden, 4 * hidden, kernel_size=kernel, padding=kernel // 2, groups=groups),
                         nn.PixelShuffle(2))


UPSAMPLERS = {
    "convtranspose": lambda hidden, kernel, groups: nn.ConvTranspose2d(hidden, hidden, kernel_size=2, stride=2),
    "pixelshuffle": PixelShuffleUp,
}


def channels_first(module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply a (B, C, H, W) module to a (B, H, W, C) token grid."""
    return module(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class USMBlock(nn.Module):
    """LayerNorm -> adaLN modulate -> (skip_scale * h + SS2D(h)) -> gated residual [-> cross-attention]."""

    def __init__(self, hidden: int, scheme: int, grid: tuple[int, int], *, skip_input: bool = False,
                 text: bool = False, **mixer_kwargs):
        super().__init__()
        self.skip_proj = nn.Linear(2 * hidden, hidden) if skip_input else None
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mixer = SS2D(hidden, scheme, grid, **mixer_kwargs)
        self.skip_scale = nn.Parameter(torch.ones(hidden))
        self.text_branch = TextBranch(hidden) if text else None
        self.adaLN_modulation = adaln_modulation(hidden, 6 if text else 3)

    def forward(self, x, c, context=None, skip=None):
        if self.skip_proj is not None:
            x = self.skip_proj(torch.cat([x, skip], dim=-1))
        mods = self.adaLN_modulation(c).chunk(3 if self.text_branch is None else 6, dim=-1)
        h = modulate(self.norm1(x), mods[0], mods[1])
        x = x + gated(self.skip_scale * h + self.mixer(h), mods[2])
        if self.text_branch is not None:
            x = self.text_branch(x, context, *mods[3:])
        return x


class EncoderStage(nn.Module):
    def __init__(self, blocks: list[USMBlock], hidden: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.down = nn.Conv2d(hidden, hidden, kernel_size=2, stride=2)


class DecoderStage(nn.Module):
    def __init__(self, blocks: list[USMBlock], hidden: int, upsampler: str, kernel: int = 3, groups: int = 1):
        super().__init__()
        self.up = UPSAMPLERS[upsampler](hidden, kernel, groups)
        self.blocks = nn.ModuleList(blocks)


@records_config
class USM(nn.Module):
    STAGES = 3

    def __init__(self, input_size: int = 32, patch_size: int = 1, in_channels: int = 4, hidden_size: int = 768,
                 depth: int = 25, num_classes: int = 0, learn_sigma: bool = False, learn_pos_emb: bool = True,
                 skip_conn: bool = True, use_convtranspose: bool = True, z_gate: bool = True,
                 has_text: bool = False, d_context: int = 768, use_checkpoint: bool = False,
                 class_dropout_prob: float = 0.1, d_state: int = 16, expand: int = 2, scan_backend: str = "auto",
                 upsample_kernel: int = 3, upsample_groups: int = 1, init: str = "released"):
        super().__init__()
        check_init(init)
        if depth < 7 or (depth - 1) % (2 * self.STAGES):
            valid = [d for d in range(7, depth + 13, 6)][-4:]
            raise ValueError(f"USM depth must be 6k + 1 (k blocks per stage, 3 stages a side), got {depth}; "
                             f"nearby valid depths: {valid}")
        grid = input_size // patch_size
        if input_size % patch_size or grid % (2 ** self.STAGES):
            raise ValueError(f"input_size / patch_size = {input_size}/{patch_size} must be a whole number "
                             f"divisible by {2 ** self.STAGES} (three 2x downsamplings)")
        self.in_channels, self.patch_size = in_channels, patch_size
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.blocks_per_stage = k = (depth - 1) // (2 * self.STAGES)
        self.use_checkpoint = use_checkpoint

        self.patch_embed = PatchEmbed(patch_size, in_channels, hidden_size)
        if learn_pos_emb:  # learned, from zeros (the paper's recipe)
            self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size))
        else:  # frozen 2D sin-cos, stored like DiT's so checkpoints carry it
            self.pos_embed = nn.Parameter(sincos_2d(hidden_size, grid, grid)[None], requires_grad=False)
        self.conditioner = Conditioner(hidden_size, num_classes, class_dropout_prob, d_context if has_text else 0)

        def block(number: int, level: int, skip_input: bool = False) -> USMBlock:
            side = grid // 2 ** level
            return USMBlock(hidden_size, number % 8, (side, side), skip_input=skip_input, text=has_text,
                            d_state=d_state, expand=expand, z_gate=z_gate, scan_backend=scan_backend)

        middle = depth // 2
        self.encoder = nn.ModuleList(
            EncoderStage([block(s * k + i, s) for i in range(k)], hidden_size) for s in range(self.STAGES))
        self.middle = block(middle, self.STAGES)
        upsampler = "convtranspose" if use_convtranspose else "pixelshuffle"
        self.decoder = nn.ModuleList(
            DecoderStage([block(middle + 1 + s * k + i, self.STAGES - 1 - s, skip_input=skip_conn) for i in range(k)],
                         hidden_size, upsampler, upsample_kernel, upsample_groups)
            for s in range(self.STAGES))
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * self.out_channels)
        if init == "released":  # the released initialize_weights: xavier on every Linear but these
            xavier_linears(self, keep=[self.conditioner.t_embedder, self.final_layer,
                                       *(m for b in self.blocks for m in (b.adaLN_modulation, b.mixer.ssm))])

    @property
    def blocks(self) -> list[USMBlock]:
        """All blocks in execution order (encoder, middle, decoder)."""
        return ([b for s in self.encoder for b in s.blocks] + [self.middle]
                + [b for s in self.decoder for b in s.blocks])

    def structure(self) -> dict:
        """The ratios an ablation at a small scale must keep from the paper's: token grid, blocks per
        stage, and how many numbers the bottleneck holds against the velocity target it must predict.
        Without skip connections everything the decoder outputs passes through the bottleneck."""
        cfg = self.config
        grid = cfg["input_size"] // cfg["patch_size"]
        bottom = grid // 2 ** self.STAGES
        bottleneck, target = bottom * bottom * cfg["hidden_size"], cfg["input_size"] ** 2 * cfg["in_channels"]
        return {"input": f"{cfg['input_size']}x{cfg['input_size']}x{cfg['in_channels']}", "patch": cfg["patch_size"],
                "tokens": grid * grid, "depth": cfg["depth"], "blocks_per_stage": self.blocks_per_stage,
                "bottleneck": f"{bottom}x{bottom}x{cfg['hidden_size']}", "bottleneck_numbers": bottleneck,
                "target_numbers": target, "bottleneck_over_target": bottleneck / target}

    def flop_formula(self, batch: int = 1, context_tokens: int = 77) -> dict[str, int]:
        """Analytic multiply-adds of one forward pass by category, plus 'total' (see usm.flops)."""
        cfg, count = self.config, Counter()
        hidden, grid = cfg["hidden_size"], cfg["input_size"] // cfg["patch_size"]
        inner, state, rank = cfg["expand"] * hidden, cfg["d_state"], math.ceil(hidden / 16)
        text = cfg["has_text"]
        ctx = context_tokens if text else 0
        count += flops.conv(batch * grid * grid, cfg["in_channels"], hidden, cfg["patch_size"] ** 2)
        count += flops.conditioning(batch, hidden, cfg["d_context"] if text else 0, ctx)
        for blk in self.blocks:
            tokens = batch * blk.mixer.grid[0] * blk.mixer.grid[1]
            count += flops.linear(batch, hidden, (6 if text else 3) * hidden) + flops.norm(tokens, hidden, affine=False)
            if blk.skip_proj is not None:
                count += flops.linear(tokens, 2 * hidden, hidden)
            count += flops.linear(tokens, hidden, 2 * inner if cfg["z_gate"] else inner)
            count += flops.conv(tokens, inner, inner, 9, groups=inner)
            count += flops.selective_ssm(tokens, inner, state, rank)
            count += flops.norm(tokens, inner, affine=True) + flops.linear(tokens, inner, hidden)
            if text:
                count += flops.text_branch(batch, tokens // batch, ctx, hidden)
        for level in range(self.STAGES):  # the resolution each down/upsampler reads
            side = grid // 2 ** level
            count += flops.conv(batch * (side // 2) ** 2, hidden, hidden, 4)  # downsample: 2x2 stride 2
            if cfg["use_convtranspose"]:
                count += flops.conv(batch * (side // 2) ** 2, hidden, hidden, 4)  # counted on its input positions
            else:
                count += flops.conv(batch * (side // 2) ** 2, hidden, 4 * hidden, cfg["upsample_kernel"] ** 2,
                                  groups=cfg["upsample_groups"])
        count += flops.norm(batch * grid * grid, hidden, affine=False) + flops.linear(batch, hidden, 2 * hidden)
        count += flops.linear(batch * grid * grid, hidden, cfg["patch_size"] ** 2 * self.out_channels)
        return flops.with_total(count)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) in [0, 1] (0 = noise, 1 = data), cond: None / class ids / context tokens."""
        c, context = self.conditioner(t, cond)
        grid = self.patch_embed(x)
        h = add_positions(grid.flatten(1, 2), self.pos_embed, self.config["input_size"]).reshape(grid.shape)
        skips = []
        for stage in self.encoder:
            for blk in stage.blocks:
                h = run_block(blk, self.use_checkpoint, h, c, context)
                skips.append(h)
            h = channels_first(stage.down, h)
        h = run_block(self.middle, self.use_checkpoint, h, c, context)
        for stage in self.decoder:
            h = channels_first(stage.up, h)
            for blk in stage.blocks:
                h = run_block(blk, self.use_checkpoint, h, c, context, skips.pop())
        return unpatchify(self.final_layer(h, c), self.patch_size, self.out_channels)


# --------------------------------------------------------------------------------------------------
# Sizes (docs/models.md). Defaults: the reference's configuration for a 256x256 image's SD-VAE
# latent (32x32x4), unconditional, with the paper's recipe (skip connections, ConvTranspose,
# learned positions). ``build_model(name, **model_args)`` changes any of them.

USM_MODELS = family_table(USM, [
    ("USM-T/2", "tiny CPU variant: D=64, depth 7 (k=1), 0.5 M params on 32x32x3",
     dict(patch_size=2, hidden_size=64, depth=7)),
    ("USM-T/1", "tiny CPU variant: D=64, depth 7 (k=1), patch 1; the smoke study's model on 16x16x1 shapes",
     dict(patch_size=1, hidden_size=64, depth=7)),
    ("USM-S/1", "D=384, depth 13 (k=2); 24.6 M params (reference: 24.9 M with unused layers)",
     dict(patch_size=1, hidden_size=384, depth=13)),
    ("USM-B/1", "D=768, depth 25 (k=4); 169.9 M params (reference: 170.6 M with unused layers)",
     dict(patch_size=1, hidden_size=768, depth=25)),
    ("USM-L/1", "D=1024, depth 49 (k=8)",
     dict(patch_size=1, hidden_size=1024, depth=49)),
    # The reference's XL/1 asks for depth 57 = 28 blocks a side, which three equal stages cannot hold,
    # and does not build. We use k = 9 (depth 55), the deepest layout of the reference's form below it.
    ("USM-XL/1", "D=1152, depth 55 (k=9; the reference's 57 is not 6k+1 and does not build)",
     dict(patch_size=1, hidden_size=1152, depth=55)),
])
