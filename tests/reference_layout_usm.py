"""An independent USM written in the reference implementation's module layout (test-only twin).

It follows the reference's structure and names -- flat ``enc_blocks`` / ``dec_blocks`` lists, the
``attn.self_attention`` mixer with a leading direction axis (K = 1) on its scan parameters, the
unused ``ln_1`` and ``y_embedder`` -- and its conventions (time given as a step number in
[0, 1000]). Its selective scan is its own naive loop. Weights saved from it must load into
``usm.models.USM`` through ``usm.models.convert`` and give the same outputs.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from usm.scan_orders import scan_order  # verified separately against the reference's printed orders


def naive_scan(u, delta, A, B, C, D):
    """u, delta (b, d, l); A (d, n); B, C (b, n, l); softplus already applied."""
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return torch.stack(ys, -1) + D[:, None] * u


class SelfAttention2D(nn.Module):  # the reference's "self_attention" (SS2D with K = 1)
    def __init__(self, dim, d_state=16):
        super().__init__()
        inner, rank = 2 * dim, math.ceil(dim / 16)
        self.rank, self.n = rank, d_state
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv2d = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.x_proj_weight = nn.Parameter(torch.randn(1, rank + 2 * d_state, inner) * 0.05)
        self.dt_projs_weight = nn.Parameter(torch.randn(1, inner, rank) * 0.1)
        self.dt_projs_bias = nn.Parameter(torch.randn(1, inner) * 0.1 - 3)
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float()).repeat(inner, 1))
        self.Ds = nn.Parameter(torch.ones(inner))
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x, scheme):
        b, hgt, wid, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        order = scan_order(scheme, hgt, wid)
        xs = x.flatten(2)[:, :, order][:, None]  # (b, K=1, E, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [self.rank, self.n, self.n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        delta = F.softplus(dts[:, 0] + self.dt_projs_bias[0][:, None])
        ys = naive_scan(xs[:, 0], delta, -torch.exp(self.A_logs), Bs[:, 0], Cs[:, 0], self.Ds)
        y = torch.empty_like(ys)
        y[:, :, order] = ys
        y = self.out_norm(y.transpose(1, 2).reshape(b, hgt, wid, -1)) * F.silu(z)
        return self.out_proj(y)


class Wrapper(nn.Module):  # the reference's "attn": skip_scale, an unused ln_1, the mixer
    def __init__(self, dim):
        super().__init__()
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SelfAttention2D(dim)

    def forward(self, x, scheme):
        return x * self.skip_scale + self.self_attention(x, scheme)


class Block(nn.Module):
    def __init__(self, dim, skip):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Wrapper(dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.skip = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x, c, scheme, skip=None):
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))
        shift, scale, gate = self.adaLN_modulation(c)[:, None, None].chunk(3, dim=-1)
        return x + gate * self.attn(self.norm(x) * (1 + scale) + shift, scheme)


class ReferenceLayoutUSM(nn.Module):
    def __init__(self, input_size=8, patch_size=1, in_channels=4, hidden_size=32, depth=7):
        super().__init__()
        k, self.p, self.c = (depth - 1) // 6, patch_size, in_channels
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size))
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(in_channels, hidden_size, patch_size, patch_size)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.y_embedder = nn.Linear(768, hidden_size)  # built, never used when unconditional
        enc, dec = [], []
        for _ in range(3):
            enc += [Block(hidden_size, False) for _ in range(k)] + [nn.Conv2d(hidden_size, hidden_size, 2, 2)]
            dec += [nn.ConvTranspose2d(hidden_size, hidden_size, 2, 2)] + [Block(hidden_size, True) for _ in range(k)]
        self.enc_blocks, self.dec_blocks = nn.ModuleList(enc), nn.ModuleList(dec)
        self.middle_block = Block(hidden_size, False)
        self.final_layer = nn.Module()
        self.final_layer.linear = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.depth = depth

    def timestep_embedding(self, t_ref):  # t_ref: diffusion step number
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half).float() / half)
        args = t_ref[:, None].float() * freqs[None]
        return self.t_embedder.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))

    def forward(self, x, t_ref):
        c = self.timestep_embedding(t_ref)
        h = self.x_embedder.proj(x)
        b, d, gh, gw = h.shape
        h = (h.flatten(2).transpose(1, 2) + self.pos_embed).reshape(b, gh, gw, d)
        number, stack = 0, []
        for layer in self.enc_blocks:
            if isinstance(layer, Block):
                h = layer(h, c, number % 8)
                stack.append(h)
                number += 1
            else:
                h = layer(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        h = self.middle_block(h, c, (self.depth // 2) % 8)
        number = self.depth // 2 + 1
        for layer in self.dec_blocks:
            if isinstance(layer, Block):
                h = layer(h, c, number % 8, stack.pop())
                number += 1
            else:
                h = layer(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        shift, scale = self.final_layer.adaLN_modulation(c)[:, None, None].chunk(2, dim=-1)
        h = self.final_layer.linear(F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale) + shift)
        h = h.reshape(b, gh, gw, self.p, self.p, self.c)
        return torch.einsum("bhwpqc->bchpwq", h).reshape(b, self.c, gh * self.p, gw * self.p)
