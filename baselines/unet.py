"""A control model written by others: diffusers' ``UNet2DModel``, trained by the same trainer.

    >>> import torch
    >>> from baselines.unet import UNet
    >>> model = UNet(input_size=16, in_channels=1, width=16)
    >>> model(torch.randn(2, 1, 16, 16), torch.rand(2)).shape
    torch.Size([2, 1, 16, 16])

When USM learns slowly, is it USM or the trainer? This family answers by swapping the model only:
a convolutional U-Net from the diffusers library (ResNet blocks, self-attention in the middle
block, no code of ours inside), wrapped to the study's call convention (``model(x, t, cond)``,
t in [0, 1] with 0 = noise, velocity out) and registered like any other family. Its time step
goes in as ``t * 1000`` (diffusers' sinusoidal embedding expects step numbers, as DiT's does).
It is unconditional: class or text conditioning is refused with a message.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from usm.models.spec import ModelSpec, records_config


@records_config
class UNet(nn.Module):
    def __init__(self, input_size: int = 32, in_channels: int = 4, width: int = 32, levels: int = 3,
                 layers_per_block: int = 1, num_classes: int = 0, class_dropout_prob: float = 0.0,
                 has_text: bool = False, d_context: int = 768):
        super().__init__()
        from diffusers import UNet2DModel

        if num_classes or has_text:
            raise ValueError("the UNet control model is unconditional: train it without --cond class/text")
        if input_size % 2 ** (levels - 1):
            raise ValueError(f"input_size {input_size} must be divisible by {2 ** (levels - 1)} "
                             f"({levels} levels, each but the last halving it)")
        channels = tuple(width * min(2 ** level, 2) for level in range(levels))  # width, 2 width, 2 width, ...
        self.in_channels = in_channels
        self.net = UNet2DModel(sample_size=input_size, in_channels=in_channels, out_channels=in_channels,
                               block_out_channels=channels, layers_per_block=layers_per_block,
                               down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
                               norm_num_groups=min(8, width))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) in [0, 1] (0 = noise, 1 = data); cond must be None."""
        if cond is not None:
            raise ValueError("the UNet control model is unconditional: call it with cond=None")
        return self.net(x, t * 1000, return_dict=False)[0]


UNET_MODELS = {
    "UNet-T": ModelSpec("UNet-T", UNet, dict(input_size=32, in_channels=4, width=32, levels=3),
                        "control model: diffusers UNet2DModel, channels 32/64/64, one ResNet block a level, "
                        "attention in the middle block"),
    "UNet-S": ModelSpec("UNet-S", UNet, dict(input_size=32, in_channels=4, width=128, levels=3, layers_per_block=2),
                        "control model: diffusers UNet2DModel, channels 128/256/256, two ResNet blocks a level"),
}
