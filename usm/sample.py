"""Command line of the sampler (``usm.training.generate``).

    python -m usm.sample runs/usm-t --num 64 --steps 25 --seed 0 --out runs/usm-t/samples
    python -m usm.sample runs/usm-t/checkpoints/step_000000200.pt --num 16 --method heun --cfg-scale 2

Writes PNGs, ``samples.npz`` and ``provenance.json``; a rerun with the same settings draws only
the missing images, and a folder holding samples of other settings is refused. Exit code 2 with
one line on stderr for a bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from usm.devices import default_device
from usm.rectified_flow import SAMPLERS
from usm.threads import use_cpu_share


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m usm.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="run directory (newest verified checkpoint) or a checkpoint file")
    parser.add_argument("--num", type=int, required=True, help="number of images")
    parser.add_argument("--steps", type=int, default=25, help="integration steps (default 25, the paper's)")
    parser.add_argument("--method", choices=sorted(SAMPLERS), default="euler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default: RUN/samples/<checkpoint and settings>)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--label", type=int, default=None, help="class of every image (default: i %% classes)")
    parser.add_argument("--context", default=None, help="text runs: .npy of tokens, row i conditions image i")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--device", default=default_device())
    return parser


def main(argv=None) -> int:
    from usm.training import USER_ERRORS, SampleConfig, generate

    args = vars(build_parser().parse_args(argv))
    args["use_ema"] = not args.pop("no_ema")
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)], force=True,
                        format="%(levelname)s %(message)s")
    use_cpu_share()
    try:
        result = generate(SampleConfig(**args))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.total} samples ({result.new} new) from {result.checkpoint} in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
