"""Training datasets and the stateless, resumable batch order.

    >>> from usm.data.datasets import StepBatches
    >>> order = StepBatches(num_items=10, batch_size=4, seed=0)
    >>> [len(b) for b in order.batches(0, 3)], order.batch(2) == list(order.batches(2, 3))[0]
    ([4, 4, 4], True)

A dataset item is addressed as ``(index, flip)``. ``StepBatches`` says which items step s uses:
epoch e = s // (N // (batch * world)) draws a permutation and flip bits from a generator seeded
by (seed, e); step s takes its slice, rank r its share. No sampler state exists, so the
"data-order position" of a checkpoint is its step, and a resumed run reads exactly the batches
an uninterrupted one would have read.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from usm.data.embedded import EMBEDDED
from usm.data.folder import DataError, center_crop_arr, scan_folder, to_rgb
from usm.data.shapes import VARIANTS
from usm.seeding import generator

log = logging.getLogger("usm.data")
CAPTIONS = "captions"  # --context value: the embedded data's synthetic captions (usm.data.captions)


@dataclass
class StepBatches:
    num_items: int
    batch_size: int
    seed: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self):
        self.per_epoch = self.num_items // (self.batch_size * self.world_size)
        if self.per_epoch < 1:
            raise DataError(f"{self.num_items} images cannot fill one global batch of "
                            f"{self.batch_size} x {self.world_size} processes: lower --batch-size")
        self._epoch, self._order = -1, None

    def _epoch_order(self, epoch: int):
        if epoch != self._epoch:
            gen = generator(self.seed, "data-order", epoch)
            self._order = (torch.randperm(self.num_items, generator=gen).tolist(),
                           torch.randint(0, 2, (self.num_items,), generator=gen).tolist())
            self._epoch = epoch
        return self._order

    def batch(self, step: int) -> list[tuple[int, bool]]:
        perm, flips = self._epoch_order(step // self.per_epoch)
        start = (step % self.per_epoch) * self.batch_size * self.world_size + self.rank * self.batch_size
        return [(perm[i], bool(flips[i])) for i in range(start, start + self.batch_size)]

    def batches(self, start_step: int, end_step: int):
        for step in range(start_step, end_step):
            yield self.batch(step)

    def sampler(self, start_step: int, end_step: int) -> "StepSampler":
        """A lazy batch sampler for a DataLoader (a 400k-step run is never held as a list)."""
        return StepSampler(self, start_step, end_step)


@dataclass
class StepSampler:
    order: StepBatches
    start_step: int
    end_step: int

    def __iter__(self):
        return self.order.batches(self.start_step, self.end_step)

    def __len__(self):
        return max(0, self.end_step - self.start_step)


class ImageDataset(torch.utils.data.Dataset):
    """Images in [-1, 1] (C, H, W) with a label and optional context tokens; item = (index, flip)."""

    def __init__(self, load, count, labels, class_names, context=None, name="", skipped=0, channels=3,
                 fingerprint=""):
        self._load, self.count, self.labels, self.class_names = load, count, labels, list(class_names)
        self.channels, self.fingerprint = channels, fingerprint  # what a cache of its images is keyed by
        self.context, self.name, self.skipped = context, name, skipped
        if context is not None and len(context) != count:
            raise DataError(f"the context array has {len(context)} rows but the dataset has {count} images: "
                            "it needs one row of tokens per image, in sorted file order")

    def __len__(self):
        return self.count

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, item):
        index, flip = item
        array = self._load(index)  # uint8 (H, W, channels)
        if flip:
            array = array[:, ::-1]
        x = torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 127.5 - 1  # a copy: sources may be read-only
        return {"x": x, **self.extras(index)}

    def extras(self, index: int) -> dict:
        """What an item carries besides the image: its label and, in text mode, its context tokens."""
        out = {"label": int(self.labels[index])}
        if self.context is not None:
            out["context"] = torch.from_numpy(np.array(self.context[index], dtype=np.float32))
        return out


def missing_context(context: str | None) -> bool:
    """Whether ``--context`` names a tokens file that does not exist (None and "captions" need none)."""
    return context not in (None, CAPTIONS) and not Path(context).is_file()


def load_tokens(context: str, data: str, resolution: int) -> np.ndarray:
    """Text tokens (num_images, tokens, d_context): a .npy file (memory-mapped), or ``captions``, the
    synthetic captions of the embedded data ``data`` at ``resolution``."""
    if context == CAPTIONS:
        if data not in VARIANTS:
            raise DataError(f"--context {CAPTIONS} means the embedded shapes' synthetic captions; {data} has "
                            "none: give a .npy of precomputed tokens (num_images, tokens, d_context)")
        from usm.data.captions import caption_tokens

        return caption_tokens(data, resolution)
    path = Path(context)
    if not path.is_file():
        raise DataError(f"context file {path} does not exist: text conditioning reads precomputed tokens "
                        "from one .npy array (num_images, tokens, d_context), rows in sorted file order")
    try:
        tokens = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:  # not an .npy, cut short, or Python objects (pickles)
        raise DataError(f"context file {path} is not a numeric .npy array ({exc}); expected float tokens "
                        "(num_images, tokens, d_context) saved with numpy.save") from None
    if not np.issubdtype(tokens.dtype, np.number):
        raise DataError(f"context file {path} holds {tokens.dtype} values; expected float tokens")
    if tokens.ndim != 3:
        raise DataError(f"context file {path} has shape {tokens.shape}; expected (num_images, tokens, d_context)")
    return tokens


def open_dataset(data: str, resolution: int, context: str | None = None, skip_bad: bool = False) -> ImageDataset:
    """``data``: an embedded dataset (``usm.data.embedded``: shapes, shapes-gray, digits) or a folder
    of images; ``context``: .npy of tokens (N, T, d), or "captions" (the shapes' synthetic captions)."""
    tokens = load_tokens(context, data, resolution) if context is not None else None
    if data in EMBEDDED:
        embedded = EMBEDDED[data]
        if resolution not in embedded.sizes:
            raise DataError(f"the embedded {data} dataset comes at {' or '.join(map(str, embedded.sizes))} px; "
                            f"got --resolution {resolution}")
        images, labels = embedded.images(resolution)
        return ImageDataset(lambda i: images[i], len(images), labels, embedded.classes, tokens, name=data,
                            channels=images.shape[-1], fingerprint=array_fingerprint(images, labels))
    files, labels, classes, skipped = scan_folder(data, resolution, skip_bad)
    return ImageDataset(FolderImages(files, resolution, skip_bad), len(files), labels, classes, tokens,
                        name=str(data), skipped=skipped, fingerprint=folder_fingerprint(data, files, resolution))


def array_fingerprint(*arrays: np.ndarray) -> str:
    """A digest of the arrays' shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def folder_fingerprint(root: str | Path, files: list[Path], resolution: int) -> str:
    """A digest of the files a folder dataset uses: each one's relative name, size and sampled
    content (its first and last bytes, ``usm.digests.sampled_file_digest``), and the resolution.
    Not the modification time: a copy of the same images is the same data, and an image rewritten
    with the same size and time is not."""
    from usm.digests import sampled_file_digest

    digest = hashlib.sha256(f"{resolution}\n".encode())
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root)}\0{size}\0".encode() + sampled_file_digest(path, size) + b"\n")
    return digest.hexdigest()[:16]


class FolderImages:
    """Loads image i of a folder. The start-up check reads headers only, so a file can still fail
    here (truncated after its header, changed during the run): the error names it. With
    ``skip_bad`` the next readable image takes its place (deterministically) and it is counted."""

    def __init__(self, files: list[Path], resolution: int, skip_bad: bool):
        self.files, self.resolution, self.skip_bad, self.skipped_mid_run = files, resolution, skip_bad, 0

    def read(self, i: int) -> np.ndarray:
        with Image.open(self.files[i]) as image:
            image.load()
            return center_crop_arr(to_rgb(image), self.resolution)

    def __call__(self, i: int) -> np.ndarray:
        for attempt in range(len(self.files)):
            index = (i + attempt) % len(self.files)
            try:
                return self.read(index)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # PIL raises these
                # for broken files (and a bomb's pixel count)
                if not self.skip_bad:
                    raise DataError(f"{self.files[index]} cannot be read ({type(exc).__name__}: {exc}): fix or "
                                    "remove it, or rerun with --skip-bad-images to train without it") from None
                self.skipped_mid_run += 1
                log.warning("skipping unreadable image %s (%s); %d skipped during this run so far",
                            self.files[index], exc, self.skipped_mid_run)
        raise DataError(f"no image of {self.files[0].parent} can be read any more")
