"""The paper's USM ablations: its recipe, and one arm per change (``--factorial``: all 32 combinations).

Recipe (Ergasti et al. 2025): skip connections, ConvTranspose upsampling, learned positions,
log-normal timesteps, z gating on. Arms: no skip connections (the paper: AFHQ FID 16.87 -> 22.84),
PixelShuffle upsampling, fixed sin-cos positions, uniform timesteps, skip_gate.
"""

from experiments.grid import Axis, Grid, Scale

# smoke: the tiny USM on the embedded 32x32 shapes, pixel space, a CPU and about 90 s per arm.
SMOKE = Scale(model="USM-T/2", data="shapes", resolution=32, num_samples=128, sample_steps=25, metric="swd",
              train=dict(max_steps=300, batch_size=8, lr=5e-4, ema_decay=0.995, ckpt_every=100, log_every=10))
# paper: USM-B/1 on 256x256 SD-VAE latents, batch 8, 400k steps, 25 Euler steps, FID on 5k samples.
PAPER_SCALE = Scale(model="USM-B/1", data="afhq", resolution=256, latent="sd-vae-ft-ema", num_samples=5000,
                    sample_steps=25, metric="fid", datasets={},
                    train=dict(max_steps=400_000, batch_size=8, lr=1e-4, ema_decay=0.9999, ckpt_every=5000,
                               log_every=100))

ABLATIONS = Grid(
    name="ablations",
    description="USM recipe vs one change at a time",
    axes=(
        Axis("skip_conn", "model_args", "skip_conn", {True: True, False: False}),
        Axis("upsampler", "model_args", "use_convtranspose", {"convtranspose": True, "pixelshuffle": False}),
        Axis("pos_emb", "model_args", "learn_pos_emb", {"learned": True, "fixed": False}),
        Axis("timesteps", "train", "timesteps", {"log": "log", "uniform": "uniform"}),
        Axis("skip_gate", "model_args", "skip_gate", {False: False, True: True}),
    ),
    recipe={"skip_conn": True, "upsampler": "convtranspose", "pos_emb": "learned", "timesteps": "log",
            "skip_gate": False},
    scales={"smoke": SMOKE, "paper": PAPER_SCALE},
)
