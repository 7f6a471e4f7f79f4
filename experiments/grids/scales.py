"""The scales more than one grid trains at, written once: a grid takes them as they are, or adds its
own axis values with ``dataclasses.replace``.

    >>> MINI.settings.model, PAPER_SCALE.settings.train["max_steps"]
    ('USM-S/1', 400000)
"""

from experiments.grid import Scale
from experiments.settings import Settings

# paper: USM-B/1 on 256x256 SD-VAE latents, batch 8, 400k steps, 25 Euler steps, FID on 5k samples.
PAPER_SCALE = Scale(Settings(model="USM-B/1", data="afhq", resolution=256, latent="sd-vae-ft-ema", num_samples=5000,
                             sample_steps=25, metric="fid",
                             train=dict(max_steps=400_000, batch_size=8, lr=1e-4, ema_decay=0.9999, ckpt_every=5000,
                                        log_every=100)))

# mini: what one modern GPU finishes in about an hour per arm, on a real dataset (AFHQ by default,
# --set data.afhq=PATH). 256 px through SD-VAE as in the paper (32x32x4 latents, patch 1, 1,024
# tokens), with USM-S/1 (D=384, depth 13: two blocks per stage): bottleneck 4x4x384 = 6,144 numbers
# for a 4,096-number target (ratio 1.5; the paper's B/1: 3.0). 30k steps at batch 32 = 960k images,
# the paper's 400k x 8 = 3.2M divided by 3.3; FID on 5k samples as in the paper. Its cost per arm
# is measured, not guessed, by the GPU check (python -m analysis gpu-check: "mini scale" row).
MINI = Scale(Settings(model="USM-S/1", data="afhq", resolution=256, latent="sd-vae-ft-ema", num_samples=5000,
                      sample_steps=25, metric="fid",
                      train=dict(max_steps=30_000, batch_size=32, lr=2e-4, ema_decay=0.9995, ckpt_every=2000,
                                 log_every=100, mixed_precision="bf16")))
