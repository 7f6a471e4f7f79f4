"""Content digests: what a cache or a sample folder is keyed by, so that a change of content (not
of a name, a path or a modification time) is what makes it stale.

    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> weights_sha256(a) == weights_sha256(a), weights_sha256(a) == weights_sha256(b)
    (True, False)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

SAMPLED = 4096  # bytes read from each end of a file by ``sampled_file_digest``


def weights_sha256(model: torch.nn.Module) -> str:
    """A digest of a model's weights (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sampled_file_digest(path: Path, size: int) -> bytes:
    """The first and last ``SAMPLED`` bytes of a file: reading every byte of a large image folder
    would take minutes, and an image rewritten in place changes its header or its tail."""
    with open(path, "rb") as f:
        head = f.read(SAMPLED)
        f.seek(max(size - SAMPLED, 0))
        return hashlib.sha256(head + f.read(SAMPLED)).digest()
