"""The paper's USM ablations: its recipe, and one arm per change (``--factorial``: all 32 combinations).

Recipe (Ergasti et al. 2025): skip connections, ConvTranspose upsampling, learned positions,
logit-normal timesteps, z gating on. Arms: no skip connections (the paper: AFHQ FID 16.87 -> 22.84),
PixelShuffle upsampling, fixed sin-cos positions, uniform timesteps, no z gate.
"""

from experiments.grid import Axis, Grid, Scale
from experiments.grids.scales import MINI, PAPER_SCALE
from experiments.settings import Settings

# smoke: USM-T/1 (D=64, depth 7, patch 1) on the embedded 16x16 gray shapes, pixel space, on the CPU.
# It keeps the paper's structure where the ablations depend on it: patch 1, depth 6k+1 with three 2x
# stages a side, the same scan schemes, and a bottleneck that holds at least as many numbers as the
# velocity target (2x2x64 = 256 for 16x16x1; USM-B/1 on 32x32x4 latents: 4x4x768 = 12,288 for
# 4,096), so the no-skip arm can still carry the image (see USM.structure() and docs/ablations.md).
# Its mixer is narrower than Mamba's default (expand 1: E = D; 8 states instead of 16), which costs
# less per step and learns about as fast per image (docs/control.md, "The lean mixer", has the
# measurements).
# Two seeds per arm; two points at a time, one CPU each. EMA 0.98 (a horizon of 50 steps).
# Learning curve: 64 samples at steps 320 and 640 (and the first 64 final samples at 960).
LEAN = dict(expand=1, d_state=8)
SMOKE = Scale(Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=128, sample_steps=25,
                       metric="pixel", eval_every=320, eval_samples=64, model_args=LEAN,
                       train=dict(max_steps=960, batch_size=8, lr=1e-3, ema_decay=0.98, ckpt_every=320, log_every=10)),
              seeds=(0, 1))
# cpu: what this project's 2-core machine trains in about an hour: 12,000 steps (96,000 images, 12.5x
# the smoke scale) with EMA 0.995, where the recipe's samples come near the data (docs/ablations.md
# has its table and curves).
CPU = Scale(Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=256, sample_steps=25,
                     metric="pixel", eval_every=2000, eval_samples=128, model_args=LEAN,
                     train=dict(max_steps=12_000, batch_size=8, lr=1e-3, ema_decay=0.995, ckpt_every=2000,
                                log_every=50)),
            seeds=(0, 1))
ABLATIONS = Grid(
    name="ablations",
    description="USM recipe vs one change at a time",
    axes=(
        Axis("skip_conn", "model_args.skip_conn", {True: True, False: False}),
        Axis("upsampler", "model_args.use_convtranspose", {"convtranspose": True, "pixelshuffle": False}),
        Axis("pos_emb", "model_args.learn_pos_emb", {"learned": True, "fixed": False}),
        Axis("timesteps", "train.timesteps", {"logit_normal": "logit_normal", "uniform": "uniform"}),
        Axis("z_gate", "model_args.z_gate", {True: True, False: False}),
    ),
    recipe={"skip_conn": True, "upsampler": "convtranspose", "pos_emb": "learned", "timesteps": "logit_normal",
            "z_gate": True},
    scales={"smoke": SMOKE, "cpu": CPU, "mini": MINI, "paper": PAPER_SCALE},
)
