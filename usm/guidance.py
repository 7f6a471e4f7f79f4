"""Classifier-free guidance for every registered model (they all carry a ``conditioner``).

    >>> import torch
    >>> from usm.guidance import guided
    >>> from usm.models.registry import build_model
    >>> model = build_model("DiT-T/2", in_channels=3, num_classes=4).eval()
    >>> x, t, y = torch.randn(2, 3, 32, 32), torch.rand(2), torch.tensor([0, 3])
    >>> torch.allclose(guided(model, x, t, y, scale=1.0), model(x, t, y))
    True

``v = v_null + scale * (v_cond - v_null)``: scale 1 is the conditional model, 0 the unconditional
one. Conditional and null passes run as one batch. For ``learn_sigma`` models every output channel
is guided (the trainer only reads the first C, the velocity).
"""

from __future__ import annotations

import torch


def guided(model, x: torch.Tensor, t: torch.Tensor, cond, scale: float) -> torch.Tensor:
    if cond is None or scale == 1.0:
        return model(x, t, cond)
    null = model.conditioner.null_cond(cond)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
    v_cond, v_null = both.chunk(2)
    return v_null + scale * (v_cond - v_null)
