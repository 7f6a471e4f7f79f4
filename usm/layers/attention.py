"""Multi-head attention on torch's scaled_dot_product_attention (flash/memory-efficient on GPU).

    >>> import torch
    >>> from usm.layers.attention import CrossAttention
    >>> CrossAttention(32, heads=2, head_dim=8)(torch.randn(2, 5, 32), torch.randn(2, 7, 32)).shape
    torch.Size([2, 5, 32])
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from usm.layers.adaln import gated, modulate


class CrossAttention(nn.Module):
    """Queries from tokens x (B, L, D), keys/values from context (B, T, D_ctx)."""

    def __init__(self, dim: int, context_dim: int | None = None, heads: int = 8, head_dim: int = 64):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.to_q(x), self.heads)
        k, v = (split_heads(t, self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        return self.to_out(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class TextBranch(nn.Module):
    """The text-conditioning branch every model shares, placed after its token mixer:
    ``x + gate * CrossAttention(modulate(LayerNorm(x), shift, scale), context)`` (8 heads x 64)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = CrossAttention(hidden, heads=8, head_dim=64)

    def forward(self, x, context, shift, scale, gate):
        """x (B, ..., D) tokens in any layout, context (B, T, D)."""
        h = modulate(self.norm(x), shift, scale)
        return x + gated(self.attn(h.flatten(1, -2), context).reshape(x.shape), gate)


class SelfAttention(nn.Module):
    """DiT's attention: one qkv Linear (with bias) and an output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = x.shape
    return x.reshape(batch, length, heads, inner // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)
