"""Seeds derived from (run seed, purpose, rank, step, ...): every random draw of a run is a pure
function of where it happens, so a resumed run replays exactly what an uninterrupted one draws.

    >>> from usm.seeding import derive_seed, generator
    >>> derive_seed(0, "noise", 1, 5) == derive_seed(0, "noise", 1, 5) != derive_seed(0, "noise", 0, 5)
    True
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(seed: int, purpose: str, *parts: int) -> int:
    """A well-mixed 63-bit seed from the run seed, a purpose tag and integers."""
    words = [int(seed), zlib.crc32(purpose.encode()), *map(int, parts)]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1 << 31, 1], dtype=np.uint64)))


def generator(seed: int, purpose: str, *parts: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose, *parts))
