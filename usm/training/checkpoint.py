"""Crash-safe checkpoints: atomic writes, checksums, keep-last-K, fall back past broken files.

    >>> import tempfile, torch
    >>> from usm.training.checkpoint import save_checkpoint, latest_checkpoint
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, 10, {"w": torch.ones(2)})
    >>> step, state, path = latest_checkpoint(d)
    >>> step, state["w"].tolist()
    (10, [1.0, 1.0])

A checkpoint is ``step_XXXXXXXXX.pt`` plus ``step_XXXXXXXXX.pt.sha256``. The payload is serialised
in memory and its checksum written first (atomically: temporary file, fsync, rename), then the
payload the same way: a ``.pt`` in place always has its checksum beside it, so a process killed (or
a disk that fills) at any moment leaves either a complete checkpoint or a checksum without a
payload, which is ignored and removed at the next start (``remove_orphan_checksums``). Loading
verifies the checksum; a file that fails it (or fails to unpickle) is reported and the previous
checkpoint is used instead. The trainer moves such files to ``unverified/`` (``set_aside``) before
it writes new ones, so a step it trains again never overwrites them: nothing is deleted that was
not verified first.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path

import torch

from usm.files import atomic_write

log = logging.getLogger("usm.training.checkpoint")
PATTERN = re.compile(r"^step_(\d{9})\.pt$")


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.pt"


def save_checkpoint(directory: str | Path, step: int, state: dict, keep: int = 0) -> Path:
    """Write ``state`` for ``step``; with ``keep > 0`` delete all but the newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = checkpoint_path(directory, step)
    atomic_write(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
    atomic_write(path, data)
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return path


def remove_orphan_checksums(directory: str | Path) -> list[Path]:
    """Delete the checksum files whose checkpoint never arrived (its writer was killed or the disk
    filled between the two writes); the names deleted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    orphans = [p for p in directory.glob("step_*.pt.sha256") if not p.with_name(p.name[: -len(".sha256")]).exists()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files of a directory, oldest first (whether valid or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if PATTERN.match(p.name))


def load_verified(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint after checking its checksum; raise ValueError saying what is wrong."""
    digest_path = path.with_name(path.name + ".sha256")
    if not digest_path.exists():
        raise ValueError(f"{path} has no checksum file (a write was interrupted)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest_path.read_text().strip():
        raise ValueError(f"{path} does not match its checksum (corrupt or partial)")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)


def newest_verified(directory: str | Path, map_location="cpu") -> tuple[tuple[int, dict, Path] | None, list[Path]]:
    """((step, state, path) of the newest checkpoint that verifies, or None; the newer ones that did
    not verify, each reported with a warning). A checkpoint that vanishes while it is read was deleted
    by a trainer's ``--keep`` (it deletes the .pt first), not broken: the folder is listed again."""
    for _ in range(3):
        broken, vanished = [], False
        for path in reversed(list_checkpoints(directory)):
            try:
                return (int(PATTERN.match(path.name).group(1)), load_verified(path, map_location), path), broken
            except Exception as exc:  # a checksum mismatch, an unreadable sidecar, a file torch cannot read
                if not path.exists():
                    vanished = True
                    continue
                log.warning("skipping checkpoint %s: %s; falling back to the previous one", path, exc)
                broken.append(path)
        if not vanished:
            break
    return None, broken


def latest_checkpoint(directory: str | Path, map_location="cpu") -> tuple[int, dict, Path] | None:
    """(step, state, path) of the newest checkpoint that verifies, or None."""
    return newest_verified(directory, map_location)[0]


def set_aside(path: Path) -> Path:
    """Move a checkpoint and its sidecar into ``unverified/`` beside it (kept, never overwritten)."""
    folder = path.parent / "unverified"
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    suffix = 1
    while target.exists():
        target, suffix = folder / f"{path.name}.{suffix}", suffix + 1
    os.replace(path, target)
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists():
        os.replace(sidecar, target.with_name(target.name + ".sha256"))
    return target
