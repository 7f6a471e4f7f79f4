"""Run a study: ``python experiments/run.py --grid ablations [--scale smoke|mini|paper] [--cluster local|debug|slurm]``.

    python experiments/run.py --grid ablations --dry-run      # the points and their directories
    python experiments/run.py --grid ablations                # run what is missing (CPU smoke scale)
    python experiments/run.py --grid ablations --status       # done / running / failed / pending
    python experiments/run.py --grid paper --scale paper --cluster slurm --partition gpu --gpus 1 \\
        --time 2880 --set data.afhq=/data/afhq/train data.celebahq=/data/celebahq/train

Rerunning is always safe: done points are skipped, running ones left alone, failed ones retried.
When every point is done, results/<study>/table.{md,tex,csv} and results/<study>/plots/ are written.
SLURM options may also come from ``--cluster-profile FILE.json`` (same keys as the flags).
``python -m experiments.run ...`` is the same command (the installed package is imported either way).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

from analysis.metrics.fid import FIDWeightsMissing
from experiments.grid import GridError
from experiments.grids import GRIDS
from experiments.launch import SLURM_FLAGS, default_parallel, format_status, launch, statuses, study_points
from experiments.point import PointMismatch
from usm.cli import parse_assignments
from usm.data.latents import VAEUnavailable
from usm.files import DamagedFile, WriteError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python experiments/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", required=True, choices=sorted(GRIDS))
    parser.add_argument("--scale", default="smoke", choices=sorted({s for grid in GRIDS.values() for s in grid.scales}),
                        help="smoke: tiny models, embedded data, CPU minutes; cpu: longer CPU runs (the control "
                             "grid's: about 30 min on 2 cores); mini: S-size models on a real dataset, about "
                             "a GPU-hour per arm; paper: the paper's settings")
    parser.add_argument("--cluster", default="local", choices=["local", "debug", "slurm"],
                        help="submitit executor: local subprocesses, debug (in this process) or slurm")
    parser.add_argument("--seeds", action="extend", nargs="+", type=int, default=None,
                        help="seeds, whole numbers >= 0 (default: the grid's)")
    parser.add_argument("--factorial", action="store_true", help="every combination of the axes, not one change")
    parser.add_argument("--only", action="extend", nargs="+", default=None, metavar="NAME",
                        help="only these points: a point's name (recipe-s1), an arm's (recipe: every seed), or a "
                             "glob of either ('*pixelshuffle*'); --dry-run lists the names")
    parser.add_argument("--set", action="extend", nargs="*", default=[], metavar="PATH=VALUE",
                        help="train.FIELD (e.g. train.max_steps=50), model_args.ARG (a constructor argument, e.g. "
                             "model_args.d_state=8), num_samples, sample_steps, eval_every, eval_samples, log_with; "
                             "data.NAME=PATH gives a dataset's folder. What an axis or --seeds sets is refused")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="points at once; local default: one per CPU, each pinned to its share "
                             "(SLURM: array parallelism, default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the points and their directories, run nothing")
    parser.add_argument("--status", action="store_true", help="print each point's status and exit")
    parser.add_argument("--no-wait", action="store_true", help="submit and return (SLURM)")
    slurm = parser.add_argument_group("slurm")
    slurm.add_argument("--cluster-profile", default=None, help="JSON file of the SLURM options below")
    slurm.add_argument("--partition")
    slurm.add_argument("--gpus", type=int)
    slurm.add_argument("--tasks", type=int, help="processes per run, one per GPU (DDP across them)")
    slurm.add_argument("--cpus", type=int, help="CPUs per task")
    slurm.add_argument("--mem-gb", type=int)
    slurm.add_argument("--time", type=int, help="minutes per job (a preempted or timed-out job requeues and resumes)")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--constraint")
    slurm.add_argument("--signal-delay", type=int, help="seconds before the time limit at which a job checkpoints "
                                                           "and requeues (submitit's default: 90)")
    slurm.add_argument("--max-requeues", type=int, help="requeues after timeouts/preemptions before a job gives up "
                                                          "(default 20)")
    slurm.add_argument("--sbatch", action="extend", nargs="*", default=[], metavar="KEY=VALUE",
                       help="extra sbatch options")
    return parser


def selected(point: dict, patterns: list[str]) -> bool:
    """Whether ``--only`` picks ``point``: a pattern equals or globs its name or its arm. Not a
    substring match: --only recipe-s1 must not also run recipe-s10."""
    return any(fnmatch.fnmatchcase(point[key], pattern) for pattern in patterns for key in ("name", "arm"))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_wait and args.cluster != "slurm":
        print(f"error: --no-wait is for --cluster slurm (SLURM runs the points); a {args.cluster} launch runs them "
              "itself, --parallel at a time, each pinned to its CPUs, so it has to wait", file=sys.stderr)
        return 2
    seeds = args.seeds or []
    bad = sorted({s for s in seeds if s < 0} | {s for s in seeds if seeds.count(s) > 1})
    if bad:
        print(f"error: --seeds {' '.join(map(str, seeds))}: seed {bad[0]} is "
              f"{'negative' if bad[0] < 0 else 'given twice'}; seeds are distinct whole numbers >= 0",
              file=sys.stderr)
        return 2
    try:
        points = study_points(args.grid, args.scale, args.seeds, args.factorial, parse_assignments(args.set, "--set"))
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    study = points
    if args.only:
        points = [p for p in points if selected(p, args.only)]
        if not points:
            print(f"error: no point of {args.grid} matches {args.only}; run --dry-run to see the names",
                  file=sys.stderr)
            return 2
    if args.dry_run:
        for point in points:
            print(f"{point['name']:<40} {Path(args.results) / point['study'] / point['name']}")
        print(f"{len(points)} points ({args.grid}, {args.scale} scale, {args.cluster})")
        return 0
    if args.status:
        print(format_status(statuses(args.results, points)))
        return 0
    slurm = json.loads(Path(args.cluster_profile).read_text()) if args.cluster_profile else {}
    slurm.update({k: getattr(args, k) for k in [*SLURM_FLAGS, "max_requeues"] if getattr(args, k, None) is not None})
    try:
        parallel = args.parallel if args.parallel is not None else default_parallel(args.cluster)
        rows = launch(points, args.results, args.cluster, parallel, slurm, args.sbatch, wait=not args.no_wait,
                      partial=bool(args.only), study=study)
    except (PointMismatch, WriteError, DamagedFile, FIDWeightsMissing, VAEUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_status(rows))
    return 0 if all(status == "done" for _, status, _ in rows) or args.no_wait else 1


if __name__ == "__main__":
    sys.exit(main())
