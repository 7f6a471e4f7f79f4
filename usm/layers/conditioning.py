"""Conditioning shared by every model: t, class ids or text tokens -> (vector c, context tokens).

    >>> import torch
    >>> from usm.layers.conditioning import Conditioner
    >>> cond = Conditioner(32, num_classes=10, class_dropout_prob=0.1)
    >>> c, context = cond(torch.rand(4), torch.tensor([0, 1, 2, 3]))
    >>> c.shape, context
    (torch.Size([4, 32]), None)

``cond`` follows the model call convention (docs/conventions.md): None (unconditional), a
LongTensor of class ids (B,), or a FloatTensor of context tokens (B, T, d_context). Text tokens
are projected to the hidden size; their mean joins the conditioning vector and the projected
tokens are what cross-attention attends to. A model built for one mode refuses the others with
an error that says what it was built for.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from usm.layers.embeddings import LabelEmbedder, TimestepEmbedder


class Conditioner(nn.Module):
    def __init__(self, hidden: int, num_classes: int = 0, class_dropout_prob: float = 0.0,
                 d_context: int = 0, time_scale: float = 1000.0):
        super().__init__()
        self.num_classes, self.d_context, self.dropout_prob = num_classes, d_context, class_dropout_prob
        self.t_embedder = TimestepEmbedder(hidden, time_scale=time_scale)
        self.class_embedder = LabelEmbedder(num_classes, hidden, class_dropout_prob) if num_classes > 0 else None
        self.context_embedder = nn.Linear(d_context, hidden) if d_context > 0 else None

    @property
    def mode(self) -> str:
        return "text" if self.context_embedder is not None else "class" if self.class_embedder is not None else "none"

    def forward(self, t: torch.Tensor, cond=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if t.dim() != 1:
            raise ValueError(f"t must have shape (batch,), got {tuple(t.shape)}")
        c = self.t_embedder(t)
        mode = self.mode
        if cond is None:
            if mode != "none":
                raise ValueError(f"this model is {mode}-conditional: pass cond ({self._expects()})")
            return c, None
        if mode == "none":
            raise ValueError("this model is unconditional (num_classes=0, no text): call it with cond=None")
        if mode == "class":
            if cond.dtype not in (torch.int32, torch.int64) or cond.shape != t.shape:
                raise ValueError(f"class-conditional model: cond must be a LongTensor of shape {tuple(t.shape)}, "
                                 f"got {cond.dtype} {tuple(cond.shape)}")
            return c + self.class_embedder(cond), None
        if not cond.is_floating_point() or cond.dim() != 3 or cond.shape[0] != t.shape[0] \
                or cond.shape[2] != self.d_context:
            raise ValueError(f"text-conditional model: cond must be float context tokens ({self._expects()}), "
                             f"got {cond.dtype} {tuple(cond.shape)}")
        if self.training and self.dropout_prob > 0:  # drop whole captions for classifier-free guidance
            keep = torch.rand(cond.shape[0], 1, 1, device=cond.device) >= self.dropout_prob
            cond = cond * keep
        context = self.context_embedder(cond.to(self.context_embedder.weight.dtype))
        return c + context.mean(dim=1), context

    def _expects(self) -> str:
        if self.mode == "class":
            return f"class ids in [0, {self.num_classes - 1}]"
        return f"(batch, tokens, {self.d_context})"

    def null_cond(self, cond):
        """The unconditional counterpart of ``cond`` for classifier-free guidance."""
        if self.mode == "class":
            return torch.full_like(cond, self.class_embedder.null_class)
        if self.mode == "text":
            return torch.zeros_like(cond)
        raise ValueError("an unconditional model has no null condition to guide with")
