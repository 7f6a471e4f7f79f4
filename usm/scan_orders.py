"""2D scan orders: the paths along which a Mamba block reads an H x W token grid.

    >>> from usm.scan_orders import scan_order, inverse_order
    >>> scan_order(0, 2, 3).tolist()          # USM scheme 0: row snake from the top-left
    [0, 1, 2, 5, 4, 3]
    >>> x = list("abcdef"); order = scan_order("col-snake-BL", 2, 3)
    >>> [x[i] for i in order.tolist()]         # gather: position k holds the token visited at step k
    ['d', 'a', 'b', 'e', 'f', 'c']
    >>> inverse_order("col-snake-BL", 2, 3)[order].tolist()  # scatter back
    [0, 1, 2, 3, 4, 5]

Tokens are numbered row-major (``r * W + c``). A scan order is a gather index; its inverse (the
argsort) puts a scanned sequence back on the grid. Every path is one primitive -- a snake, row- or
column-major, starting at a named corner, optionally walked backwards -- so paths are rows of a
table (``PATHS``), and USM's eight schemes (docs/scan.md) and ZigMa's eight zigzags are
tuples of names. They are defined for any H x W, square or not.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Snake:
    """A boustrophedon path: ``major`` 'row' or 'col', starting at ``corner`` (TL/TR/BL/BR)."""

    major: str
    corner: str
    reverse: bool = False

    def coordinates(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) of the tokens in visiting order, on the CPU (whatever the default device is:
        orders are cached, and one built under ``torch.device("meta")`` would poison the cache)."""
        arange = functools.partial(torch.arange, device="cpu")
        if self.major == "row":  # rows top to bottom; even rows left to right, odd rows back
            rows = arange(height).repeat_interleave(width)
            cols = arange(width).repeat(height)
            cols = torch.where(rows % 2 == 0, cols, width - 1 - cols)
        else:  # columns left to right; even columns downwards, odd columns upwards
            cols = arange(width).repeat_interleave(height)
            rows = arange(height).repeat(width)
            rows = torch.where(cols % 2 == 0, rows, height - 1 - rows)
        if self.corner in ("TR", "BR"):  # mirror left-right
            cols = width - 1 - cols
        if self.corner in ("BL", "BR"):  # mirror top-bottom
            rows = height - 1 - rows
        if self.reverse:
            rows, cols = rows.flip(0), cols.flip(0)
        return rows, cols


PATHS: dict[str, Snake] = {
    f"{major}-snake-{corner}{'-reversed' if reverse else ''}": Snake(major, corner, reverse)
    for major in ("row", "col")
    for corner in ("TL", "TR", "BL", "BR")
    for reverse in (False, True)
}

# USM's scheme ids 0-7 (docs/scan.md; block number % 8 picks one).
USM_SCHEMES: tuple[str, ...] = (
    "row-snake-TL", "row-snake-TL-reversed",
    "row-snake-TR", "row-snake-TR-reversed",
    "col-snake-TL", "col-snake-TL-reversed",
    "col-snake-BL", "col-snake-BL-reversed",
)

# ZigMa's zigzag paths, layer i uses ZIGMA_PATHS[i % 8] (ZigMa's "zigzag_N8" order).
ZIGMA_PATHS: tuple[str, ...] = (
    "row-snake-TL", "col-snake-TL", "row-snake-TR", "col-snake-TR",
    "row-snake-BL", "col-snake-BL", "row-snake-BR", "col-snake-BR",
)


def path_name(scheme: int | str) -> str:
    """The path name of a USM scheme id, or the name itself after checking it."""
    if isinstance(scheme, int):
        return USM_SCHEMES[scheme % len(USM_SCHEMES)]
    if scheme not in PATHS:
        raise ValueError(f"unknown scan path {scheme!r}; valid: {sorted(PATHS)} or a USM scheme id 0-7")
    return scheme


@functools.lru_cache(maxsize=256)
def _order(name: str, height: int, width: int) -> torch.Tensor:
    if height < 1 or width < 1:
        raise ValueError(f"a scan order needs a grid of at least 1 x 1, got {height} x {width}")
    rows, cols = PATHS[name].coordinates(height, width)
    return rows * width + cols


def scan_order(scheme: int | str, height: int, width: int) -> torch.Tensor:
    """Gather index (LongTensor of H*W): ``tokens[:, order]`` is the grid read along the path."""
    return _order(path_name(scheme), height, width).clone()


def inverse_order(scheme: int | str, height: int, width: int) -> torch.Tensor:
    """Scatter index: ``scanned[:, inverse]`` puts a scanned sequence back in row-major order."""
    return torch.argsort(_order(path_name(scheme), height, width))


def _gather(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    # gather with the index broadcast (a view) over the other dimensions: on the CPU 4-6x faster than
    # index_select along an inner dimension (measured on (64, 128, 256) float32: 2.8 vs 16 ms)
    shape = [1] * x.dim()
    shape[dim] = -1
    return torch.gather(x, dim, index.view(shape).expand(x.shape))


class _Permute(torch.autograd.Function):
    """x indexed by a permutation along ``dim``; the backward indexes by the inverse permutation.
    (Plain indexing's backward is a scatter-add, which a permutation never needs.)"""

    @staticmethod
    def forward(ctx, x, order, inverse, dim):
        ctx.save_for_backward(inverse)
        ctx.dim = dim % x.dim()
        return _gather(x, order, ctx.dim)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return _gather(grad, inverse, ctx.dim), None, None, None


def permute(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` read along a path (``order``) on dimension ``dim``; ``inverse`` must be its inverse.

        >>> x = torch.arange(6.0); order = scan_order(0, 2, 3)
        >>> permute(x, order, inverse_order(0, 2, 3), 0).tolist()
        [0.0, 1.0, 2.0, 5.0, 4.0, 3.0]
    """
    return _Permute.apply(x, order, inverse, dim)
