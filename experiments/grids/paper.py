"""The paper's comparison: USM-B/1 vs ZigMa-B/1 (and DiT-B/2) on AFHQ, CelebA-HQ and COCO (text).

Datasets are given by path: ``--set data.afhq=/data/afhq/train data.celebahq=/data/celebahq/train
data.coco=/data/coco/train2017 data.coco-tokens=/data/coco/tokens.npy``. COCO is text-conditioned:
its tokens are precomputed (e.g. CLIP text-encoder outputs, one row per image in sorted file
order, shape (num_images, tokens, d_context)). At smoke scale the embedded shapes stand in, with
and without their synthetic captions (``--context captions``), so the text path runs on a CPU.
"""

from dataclasses import replace

from experiments.grid import Axis, Grid, Scale, Several
from experiments.grids.scales import MINI, PAPER_SCALE
from experiments.settings import Settings

MODELS_AXIS = Axis("model", "model", {"USM": "USM-B/1", "ZigMa": "ZigMa-B/1", "DiT": "DiT-B/2"})
TEXT = {"train.cond": "text"}  # the trainer setting of a text-conditioned dataset

PAPER = Grid(
    name="paper",
    description="USM vs ZigMa vs DiT per dataset",
    axes=(MODELS_AXIS, Axis("dataset", "data", {
        "afhq": "afhq", "celebahq": "celebahq",
        "coco": Several({"data": "coco", "train.context": "coco-tokens", **TEXT})})),
    recipe={"model": "USM", "dataset": "afhq"},
    arms="factorial",
    scales={
        # smoke: the tiny variants on the embedded dataset, unconditional and with its captions
        "smoke": Scale(Settings(model="USM-T/2", data="shapes", resolution=32, num_samples=128, metric="pixel",
                                train=dict(max_steps=300, batch_size=8, lr=5e-4, ema_decay=0.995, ckpt_every=100,
                                           log_every=10)),
                       axis_values={"model": {"USM": "USM-T/2", "ZigMa": "ZigMa-T/2", "DiT": "DiT-T/2"},
                                    "dataset": {"shapes": "shapes",
                                                "shapes-text": Several({"data": "shapes", "train.context": "captions",
                                                                        **TEXT})}}),
        # cpu: the comparison at laptop scale. The T sizes share USM-T's width (64) and their depths give
        # USM-T/1's parameter count (within 2%), at the paper's patch sizes (USM /1, ZigMa /1, DiT /2),
        # with the released mixers and inits; the diffusers U-Net is the control written by others. One
        # recipe for all (the control grid's): batch 8, lr 1e-3, EMA 0.995; 4,000 steps (32,000 images).
        "cpu": Scale(Settings(model="USM-T/1", data="shapes-gray", resolution=16, num_samples=256, metric="pixel",
                              eval_every=800, eval_samples=64,
                              train=dict(max_steps=4000, batch_size=8, lr=1e-3, ema_decay=0.995, ckpt_every=800,
                                         log_every=50)),
                     seeds=(0, 1),
                     axis_values={"model": {"USM": "USM-T/1", "ZigMa": "ZigMa-T/1", "DiT": "DiT-T/2", "UNet": "UNet-T"},
                                  "dataset": {"shapes": "shapes-gray", "digits": "digits"}}),
        # mini and paper: the scales the ablations train at (grids/scales.py), with this grid's models
        "mini": replace(MINI, axis_values={"model": {"USM": "USM-S/1", "ZigMa": "ZigMa-S/1", "DiT": "DiT-S/2"}}),
        "paper": PAPER_SCALE,
    },
)
