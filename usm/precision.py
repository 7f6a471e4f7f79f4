"""Float32 matrix products on CUDA: TF32, as the DiT family trains.

    >>> from usm.precision import use_tf32
    >>> use_tf32("cpu")  # nothing to set off CUDA
    False

PyTorch lets cuDNN convolutions use TF32 by default but not matrix products, so an fp32 step on an
Ampere-or-newer GPU runs its convolutions at TF32 and its linear layers (most of a transformer's or
a Mamba block's work) at full fp32, several times slower. ``use_tf32`` turns it on for both; every
CUDA entry point (the trainer, ``analysis.metrics.profile``, ``analysis.bench.gpu_check``) calls it and records
it. bf16 / fp16 mixed precision is unaffected (its products are already low precision).
"""

from __future__ import annotations

import torch


def use_tf32(device) -> bool:
    """Let float32 matmuls and convolutions use TF32 on a CUDA ``device``; whether it applies."""
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True
