"""Draw samples from a trained run: PNGs plus one .npz, seeded, batched, resumable.

    python -m usm.sample runs/usm-t --num 64 --steps 25 --seed 0 --out runs/usm-t/samples
    python -m usm.sample runs/usm-t/checkpoints/step_000000200.pt --num 16 --method heun --cfg-scale 2

Image i uses noise (and, for class models, label ``i % num_classes`` unless ``--label``) derived
from (seed, i): the result does not depend on the batch size, and a rerun keeps the PNGs already
in ``--out`` and draws only the missing ones. EMA weights are used unless ``--no-ema``. Runs
trained on VAE latents are decoded through the same VAE. ``samples.npz`` (uint8 images, labels)
is rewritten from all PNGs at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from usm.checkpoint import latest_checkpoint, load_verified
from usm.rectified_flow import SAMPLERS, sample
from usm.runs import RunDir, model_from_config
from usm.seeding import generator
from usm.threads import use_cpu_share


def load_run_model(target: str | Path, use_ema: bool = True, device="cpu"):
    """(model, resolved config, checkpoint path) from a run directory (its newest valid checkpoint)
    or a checkpoint file."""
    target = Path(target)
    if target.is_dir():
        found = latest_checkpoint(RunDir(target).checkpoints)
        if found is None:
            raise FileNotFoundError(f"{target} has no valid checkpoint in checkpoints/: train it first "
                                    "(python -m usm.train ... --run-dir it)")
        _, state, path = found
    elif target.is_file():
        state, path = load_verified(target), target
    else:
        raise FileNotFoundError(f"{target} is neither a run directory nor a checkpoint file")
    resolved = state["config"]
    model = model_from_config(resolved)
    model.load_state_dict(state["ema" if use_ema else "model"])  # strict
    return model.to(device).eval(), resolved, path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (B, C, H, W) -> uint8 (B, H, W, C)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usm.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="run directory (newest valid checkpoint) or a checkpoint file")
    parser.add_argument("--num", type=int, required=True, help="number of images")
    parser.add_argument("--steps", type=int, default=25, help="integration steps (default 25, the paper's)")
    parser.add_argument("--method", choices=sorted(SAMPLERS), default="euler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default: RUN/samples/<checkpoint>-s<seed>)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--label", type=int, default=None, help="class of every image (default: i %% classes)")
    parser.add_argument("--context", default=None, help="text runs: .npy of tokens, row i conditions image i")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    use_cpu_share()

    try:
        model, resolved, ckpt = load_run_model(args.target, not args.no_ema, args.device)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    derived, data = resolved["derived"], resolved["identity"]["data"]
    out = Path(args.out) if args.out else ckpt.parent.parent / "samples" / f"{ckpt.stem}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    contexts = None
    if derived["d_context"]:
        if args.context is None:
            print("error: this run is text-conditional: pass --context tokens.npy (one row per image)", file=sys.stderr)
            return 2
        contexts = np.load(args.context, mmap_mode="r")
    vae = None
    if data["latent"] != "none":
        from usm.data.latents import load_vae

        vae = load_vae(data["latent"], args.device)

    def label_of(i):
        if not derived["num_classes"]:
            return -1
        return args.label if args.label is not None else i % derived["num_classes"]

    missing = [i for i in range(args.num) if not (out / f"{i:06d}.png").exists()]
    shape = (derived["in_channels"], derived["input_size"], derived["input_size"])
    for start in tqdm(range(0, len(missing), args.batch_size), desc="sample", disable=not missing):
        ids = missing[start: start + args.batch_size]
        noise = torch.stack([torch.randn(shape, generator=generator(args.seed, "sample", i)) for i in ids])
        cond = None
        if derived["num_classes"]:
            cond = torch.tensor([label_of(i) for i in ids], device=args.device)
        elif contexts is not None:
            cond = torch.from_numpy(np.stack([np.asarray(contexts[i], dtype=np.float32) for i in ids])).to(args.device)
        x = sample(model, noise.to(args.device), args.steps, args.method, cond, args.cfg_scale)
        if vae is not None:
            from usm.data.latents import decode

            x = decode(vae, x)
        for i, image in zip(ids, to_uint8(x)):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(out / f"{i:06d}.png")
    mode = "L" if derived["in_channels"] == 1 else "RGB"
    images = np.stack([np.asarray(Image.open(out / f"{i:06d}.png").convert(mode)) for i in range(args.num)])
    images = images[..., None] if mode == "L" else images
    np.savez(out / "samples.npz", images=images, labels=np.array([label_of(i) for i in range(args.num)]))
    print(f"{args.num} samples ({len(missing)} new) from {ckpt} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
