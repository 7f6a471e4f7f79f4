"""FID (and KID / IS on request) through torch-fidelity's Inception-v3, with local weights only.

    python -m analysis fid SAMPLES_DIR REFERENCE_DIR [--num 5000] [--fid-weights PATH] [--kid] [--isc]

FID compares a folder of generated images with a reference -- the TRAINING images (or another
named set; ``shapes`` exports the embedded dataset) -- using the Inception-v3 weights of
2015-12-05 (``weights-inception-2015-12-05-6726825d.pth``). The weights are never downloaded here:
they come from ``--fid-weights``, ``$USM_FID_WEIGHTS`` or torch's hub cache, and without them the
call stops with the file name, its URL and where to put it. No number computed with other weights
is ever reported as FID. The reference's statistics are cached by torch-fidelity under
``$USM_BENCH_CACHE/fidelity`` (``--reference-name``) and reused. Every result states the number of
images on each side, the reference and the weights file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class FIDWeightsMissing(FileNotFoundError):
    pass


def check_weights_file(path: Path) -> None:
    """FIDWeightsMissing for a file that cannot be the weights: under the official name, one whose
    SHA-256 does not start with the digest the name carries (torch hub's convention,
    ``...-6726825d.pth``); under another name, one that does not load as a state dict. A file cut
    short never reaches torch-fidelity (whose unpickling traceback was the only message)."""
    import hashlib

    import torch

    if path.name == INCEPTION_FILE:
        expected, digest = INCEPTION_FILE.rsplit("-", 1)[1].split(".")[0], hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest().startswith(expected):
            return
        problem = f"its SHA-256 does not start with {expected}"
    else:
        try:
            if isinstance(torch.load(path, map_location="cpu", weights_only=True), dict):
                return
            problem = "it holds no state dict"
        except Exception as exc:  # noqa: BLE001 - unpickling raises many kinds for a damaged file
            problem = f"it does not load ({type(exc).__name__})"
    raise FIDWeightsMissing(f"{path} is not usable as the Inception-v3 weights {INCEPTION_FILE} ({problem}: cut "
                            f"short, or another file): fetch {INCEPTION_URL} again")


def inception_weights(path: str | None = None) -> Path:
    """The Inception weights file: ``path``, $USM_FID_WEIGHTS, or torch's hub cache; else an error."""
    import torch

    candidates = [Path(p) for p in (path, os.environ.get("USM_FID_WEIGHTS")) if p]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for candidate in candidates + [hub]:
        if candidate.is_file():
            check_weights_file(candidate)
            return candidate
    where = f"{candidates[0]} does not exist. " if candidates else ""
    raise FIDWeightsMissing(
        f"{where}FID needs the Inception-v3 weights {INCEPTION_FILE}, which this machine cannot download. "
        f"Fetch {INCEPTION_URL} elsewhere, then pass --fid-weights PATH, set USM_FID_WEIGHTS=PATH, or put it "
        f"at {hub}.")


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def _first(folder: Path, num: int | None, tmp: Path) -> tuple[str, int]:
    """A folder holding the first ``num`` images of ``folder`` (links), and how many it holds."""
    from usm.cli import UsageError

    images = list_images(folder)
    if num is not None and num < 1:
        raise UsageError(f"--num {num}: must be at least 1")
    if not images:
        raise UsageError(f"{folder} holds no images")
    if num is None or num >= len(images):
        if num is not None and num > len(images):
            raise UsageError(f"{folder} holds {len(images)} images, fewer than the {num} asked for")
        return str(folder), len(images)
    for i, image in enumerate(images[:num]):
        (tmp / f"{i:07d}{image.suffix}").symlink_to(image.resolve())
    return str(tmp), num


def compute_metrics(samples: str | Path, reference: str | Path, num: int | None = None,
                    weights: str | None = None, fid: bool = True, kid: bool = False, isc: bool = False,
                    prc: bool = False, reference_name: str | None = None, device: str = "cpu") -> dict:
    """torch-fidelity metrics between two image folders; ``num`` caps the generated side. ``prc``:
    precision and recall (k = 3) in the same Inception features (``inception_precision``,
    ``inception_recall``), the definitions ``analysis.metrics.manifold`` computes in pixel space."""
    import torch
    import torch_fidelity

    from usm.files import cache_dir

    weights_path = inception_weights(weights)
    with tempfile.TemporaryDirectory() as tmp:
        input1, count = _first(Path(samples), num, Path(tmp))
        reference_count = len(list_images(reference))
        cuda = str(device).startswith("cuda")
        # torch-fidelity runs on the current CUDA device: make it the one asked for (cuda:1, ...)
        with torch.cuda.device(device) if cuda else contextlib.nullcontext():
            metrics = torch_fidelity.calculate_metrics(
                input1=input1, input2=str(reference), fid=fid, kid=kid, isc=isc, prc=prc, cuda=cuda,
                # one network for every metric: torch-fidelity's precision would otherwise take VGG-16
                feature_extractor="inception-v3-compat", feature_layer_prc="2048",
                feature_extractor_weights_path=str(weights_path), samples_find_deep=True, verbose=False,
                cache_root=str(cache_dir() / "fidelity"), input2_cache_name=reference_name,
                kid_subset_size=min(1000, count, reference_count))
    out = {"num_samples": count, "num_reference": reference_count, "reference": str(reference),
           "weights": str(weights_path)}
    names = {"frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid",
             "kernel_inception_distance_std": "kid_std", "inception_score_mean": "is", "inception_score_std": "is_std",
             "precision": "inception_precision", "recall": "inception_recall", "f_score": "inception_f_score"}
    out.update({names.get(k, k): float(v) for k, v in metrics.items()})
    return out
