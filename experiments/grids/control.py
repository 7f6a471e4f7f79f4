"""The control: USM-T/1 beside a U-Net written by others (diffusers), trained alike, on two datasets.

Is a slow learning curve USM's or the trainer's? Both models get the same trainer, recipe, data
order, seeds, sampler and metrics; only the model differs. On ``shapes-gray`` (drawn here) and
``digits`` (UCI handwritten digits from scikit-learn: real data nobody here drew), both 16x16x1.
The ``UNet-T`` control is ``baselines/unet.py``; both models' parameters and GFLOPs are in the
study's table (``results/reference/control/``).
"""

from experiments.grid import Axis, Grid, Scale
from experiments.settings import Settings

# The ablations' smoke recipe (batch 8, lr 1e-3, EMA 0.98), three times as many steps, one seed:
# a curve point every 160 steps (64 samples), 128 final samples.
SMOKE = Scale(Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=128, sample_steps=25,
                       metric="pixel", eval_every=160, eval_samples=64,
                       train=dict(max_steps=960, batch_size=8, lr=1e-3, ema_decay=0.98, ckpt_every=320, log_every=10)),
              seeds=(0,))
# cpu: about half an hour of this project's 2-core machine, two points at a time (the table's caption
# records each launch's wall time). EMA 0.995: a horizon of 200 of 6,400 steps.
CPU = Scale(Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=256, sample_steps=25,
                     metric="pixel", eval_every=800, eval_samples=128,
                     train=dict(max_steps=6400, batch_size=8, lr=1e-3, ema_decay=0.995, ckpt_every=800, log_every=50)),
            seeds=(0,))

CONTROL = Grid(
    name="control",
    description="USM-T/1 vs a diffusers UNet2DModel, same trainer, shapes and digits",
    axes=(Axis("model", "model", {"USM": "USM-T/1", "UNet": "UNet-T"}),
          Axis("dataset", "data", {"shapes": "shapes-gray", "digits": "digits"})),
    recipe={"model": "USM", "dataset": "shapes"},
    arms="factorial",
    scales={"smoke": SMOKE, "cpu": CPU},
)
