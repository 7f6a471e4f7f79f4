"""SD-VAE latents: load the autoencoder from a local folder or the HF cache, encode, decode, cache.

    >>> from usm.data.latents import VAE_MODELS, SCALE
    >>> sorted(VAE_MODELS), SCALE
    (['sd-vae-ft-ema', 'sd-vae-ft-mse'], 0.18215)

``--latent none`` trains in pixel space. ``--latent sd-vae-ft-ema`` (or ``-mse``, or a folder
saved with ``save_pretrained``) trains on ``0.18215 * mean(encoder(x))``. Weights are never
downloaded at run time: they are looked up in a local folder or the Hugging Face cache only
(``local_files_only``), so an offline machine without them gets a clear error at once.
``--latent-cache`` encodes the whole dataset once (each image and its mirror) into one ``.npy``
and trains from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

VAE_MODELS = {"sd-vae-ft-ema": "stabilityai/sd-vae-ft-ema", "sd-vae-ft-mse": "stabilityai/sd-vae-ft-mse"}
SCALE = 0.18215


class VAEUnavailable(RuntimeError):
    pass


def _missing_weights(source: str) -> str:
    return (f"the weights of {source} are not on this machine and are never downloaded at run time. "
            f"On a machine with network run `huggingface-cli download {source}` (it fills the HF cache; "
            f"copy ~/.cache/huggingface over) or `huggingface-cli download {source} --local-dir DIR` and "
            f"pass --latent DIR")


def check_vae(name: str) -> None:
    """VAEUnavailable, in milliseconds, when ``name`` is neither a local folder nor in the hub's cache
    (``load_vae`` would fail; a launcher asks this before any point trains)."""
    if Path(name).is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    source = VAE_MODELS.get(name, name)
    if not isinstance(try_to_load_from_cache(source, "config.json"), str):
        raise VAEUnavailable(f"cannot load the VAE {name!r}: {_missing_weights(source)}")


def load_vae(name: str, device="cpu"):
    source = VAE_MODELS.get(name, name)
    local = Path(name).is_dir()
    check_vae(name)  # answer "not here" before importing diffusers (seconds)
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # OSError / EnvironmentError / ValueError from diffusers and the hub
        hint = (f"the folder {name} is not a diffusers AutoencoderKL ({type(exc).__name__}: {exc})" if local
                else _missing_weights(source))
        raise VAEUnavailable(f"cannot load the VAE {name!r}: {hint}") from None
    return vae.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode(vae, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> scaled latent means."""
    return vae.encode(images.to(vae.dtype)).latent_dist.mean * SCALE


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images in [-1, 1]."""
    return vae.decode(latents.to(vae.dtype) / SCALE).sample.clamp(-1, 1)


def latent_shape(vae, resolution: int) -> tuple[int, int]:
    """(channels, side) of the latent of a resolution x resolution image."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.config.latent_channels, resolution // factor


def build_latent_cache(dataset, vae, path: str | Path, batch_size: int = 32, progress=None) -> np.ndarray:
    """Encode every image and its mirror once: an array (N, 2, C, h, w) float32 at ``path``
    (with ``path + '.json'`` describing what it holds); reused while that description matches. The
    description holds the dataset's content fingerprint, so a folder whose images changed (same
    name, same count) is encoded again rather than trained on from the old cache.

    Several runs may share one cache (a study's points of one dataset do): the first to come builds
    it while holding ``path + '.lock'``, the others wait on the lock and then read it. The array is
    written under a name of the builder's own and renamed into place, then its description written
    atomically: a cache whose builder was killed is built again, never read half-written."""

    from usm.digests import weights_sha256
    from usm.files import atomic_write, read_cache, remove_dead_temps, temp_path
    from usm.locks import held

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset.name, "content": dataset.fingerprint, "count": len(dataset),
            "image_shape": list(dataset[(0, False)]["x"].shape), "vae": str(vae.config._name_or_path),
            "vae_weights": weights_sha256(vae), "scale": SCALE}  # another VAE saved under the same name differs
    meta_path = path.with_name(path.name + ".json")
    with held(path.with_name(path.name + ".lock")):  # one process builds the cache, the others wait for it
        if path.exists() and read_cache(meta_path) == meta:
            return np.load(path, mmap_mode="r")
        meta_path.unlink(missing_ok=True)  # from here on the cache is not valid until it is whole
        device = next(vae.parameters()).device
        remove_dead_temps(path.parent)
        tmp = temp_path(path)
        out = None
        indices = range(0, len(dataset), batch_size)
        for start in (progress(indices) if progress else indices):
            items = [dataset[(i, flip)]["x"] for i in range(start, min(start + batch_size, len(dataset)))
                     for flip in (False, True)]
            z = encode(vae, torch.stack(items).to(device)).float().cpu().numpy()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                shape=(len(dataset), 2) + z.shape[1:])
            out[start: start + len(items) // 2] = z.reshape(-1, 2, *z.shape[1:])
        out.flush()
        del out
        os.replace(tmp, path)
        atomic_write(meta_path, json.dumps(meta))
    return np.load(path, mmap_mode="r")
