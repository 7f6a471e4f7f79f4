"""Analytic multiply-add counts of the layers the models are made of (the twins of the FLOP counter).

    >>> from usm.flops import linear, selective_ssm
    >>> linear(tokens=1024, fan_in=768, fan_out=3072)["linear"]
    2415919104
    >>> sorted(selective_ssm(tokens=16, inner=8, state=4, rank=1))
    ['linear', 'scan']

Conventions (those of fvcore, so the counter and the formulas can be compared term by term):
one multiply-add = one FLOP; bias additions and element-wise activations are not counted; a
LayerNorm/RMSNorm costs 4 per element (5 with an affine weight); a convolution costs
output positions x (in / groups) x out x kernel area; a transposed convolution counts its input
positions instead; attention costs 2 x heads x Lq x Lk x head_dim; the selective scan costs
9 * L * D * N (+ L * D for the D skip term), as the Mamba authors count it.
"""

from __future__ import annotations

from collections import Counter

from usm.ssm import scan_flops


def linear(tokens: int, fan_in: int, fan_out: int) -> Counter:
    return Counter(linear=tokens * fan_in * fan_out)


def norm(tokens: int, dim: int, affine: bool) -> Counter:
    return Counter(norm=tokens * dim * (5 if affine else 4))


def conv(out_positions: int, in_channels: int, out_channels: int, kernel_area: int, groups: int = 1) -> Counter:
    return Counter(conv=out_positions * (in_channels // groups) * out_channels * kernel_area)


def attention(query_tokens: int, key_tokens: int, inner: int) -> Counter:
    """Scores and weighted sum: 2 * Lq * Lk * (heads * head_dim)."""
    return Counter(attention=2 * query_tokens * key_tokens * inner)


def selective_ssm(tokens: int, inner: int, state: int, rank: int) -> Counter:
    """x_proj, dt_proj and the scan of one ``SelectiveSSM`` over ``tokens`` positions."""
    return (linear(tokens, inner, rank + 2 * state) + linear(tokens, rank, inner)
            + Counter(scan=scan_flops(1, inner, tokens, state)))


def timestep_embedder(batch: int, hidden: int, freq_dim: int = 256) -> Counter:
    return linear(batch, freq_dim, hidden) + linear(batch, hidden, hidden)


def text_branch(batch: int, tokens: int, context_tokens: int, hidden: int, inner: int = 512) -> Counter:
    """usm.layers.attention.TextBranch on ``tokens`` queries per sample."""
    return (norm(batch * tokens, hidden, affine=False) + linear(batch * tokens, hidden, inner)
            + linear(batch * context_tokens, hidden, 2 * inner) + attention(batch * tokens, context_tokens, inner)
            + linear(batch * tokens, inner, hidden))


def conditioning(batch: int, hidden: int, d_context: int, context_tokens: int) -> Counter:
    """Conditioner: the time MLP, and the context projection in text mode (label lookups are free)."""
    flops = timestep_embedder(batch, hidden)
    if d_context:
        flops += linear(batch * context_tokens, d_context, hidden)
    return flops


def with_total(flops: Counter) -> dict[str, int]:
    out = dict(sorted(flops.items()))
    out["total"] = sum(flops.values())
    return out
