"""``python -m analysis COMMAND``: models, flops, profile, table, plots, fid, paper, validate-metrics, and the
benchmarks and checks bench-scan, step-profile, trainer-rate, scales, sampler-sweep, gpu-check, doc-blocks
(``--help`` on each).

    python -m analysis flops --model USM-B/1 --image-size 256 --json
    python -m analysis flops --conventions      # the paper's GFLOPs: every counting convention, rebuilt
    python -m analysis step-profile --model-arg expand=1 d_state=8
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from analysis.report.records import PLOTS, TABLES, copy_records
from experiments.grids import GRIDS
from usm.cli import parse_assignments
from usm.devices import default_device
from usm.files import atomic_write
from usm.models.registry import MODELS


def flops_command(args) -> int:
    from analysis.metrics.flops import count_registered, format_report
    from usm.cli import UsageError

    if args.conventions:
        from analysis.metrics.flop_conventions import conventions, report

        if args.image_size is not None or args.pixels or args.model_arg:
            raise UsageError("--conventions counts the paper's setting (256 px, SD-VAE latents, the models' "
                             "defaults): drop --image-size, --pixels and --model-arg")
        models = [args.model] if args.model else ["USM-B/1", "ZigMa-B/1"]
        if args.json:
            print(json.dumps([conventions(m, text) for text in (False, True) for m in models], indent=2))
        else:
            print(report(models))
        return 0
    if args.model is None:
        raise UsageError("flops needs --model NAME (or --conventions for the paper's two models)")
    model_args = parse_assignments(args.model_arg, "--model-arg")
    report = count_registered(args.model, args.image_size, latent=not args.pixels, **model_args)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def models_command(args) -> int:
    from analysis.report.model_table import render
    from experiments.grids import GRIDS

    print(render(GRIDS.values()))
    return 0


def scales_command(args) -> int:
    from analysis.report.scale_table import render
    from experiments.grids import GRIDS

    print(render(GRIDS[args.grid]))
    return 0


def profile_command(args) -> int:
    from analysis.metrics.profile import render, run_profile

    records = run_profile(args.models, args.image_size, args.batch, args.device, args.out, args.throughput_max_size)
    print(render(records))
    print(f"\nwrote {len(records)} JSON files, table.md and scaling.png/.pdf to {args.out}")
    return 0


def table_command(args) -> int:
    from analysis.report.tables import write_tables

    paths = write_tables(Path(args.results) / args.study)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    record(args, TABLES)
    return 0


def plots_command(args) -> int:
    from analysis.report.plots import write_plots

    paths = write_plots(Path(args.results) / args.study, args.results)
    print("wrote " + ", ".join(str(p) for p in paths))
    record(args, PLOTS)
    return 0


def record(args, names: tuple[str, ...]) -> None:
    """With ``--record DIR``: copy the study's checked-in files among ``names`` into DIR."""
    if args.record:
        copies = copy_records(Path(args.results) / args.study, args.record, names)
        print(f"recorded {', '.join(p.name for p in copies)} in {args.record}")


def fid_command(args) -> int:
    from analysis.metrics.fid import compute_metrics

    result = compute_metrics(args.samples, args.reference, args.num, args.fid_weights, kid=args.kid, isc=args.isc,
                             prc=args.prc,
                             reference_name=args.reference_name, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def paper_command(args) -> int:
    from analysis.report.paper import read_records, render, render_summary, rows_of

    records = read_records(args.results, args.reference)
    rows, stamps = rows_of(records), records.stamps()
    print(render_summary(rows, stamps) if args.summary else render(rows, args.format, stamps))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for fmt in ("md", "tex", "csv"):
            atomic_write(out / f"paper.{fmt}", render(rows, fmt, stamps))
        atomic_write(out / "paper_summary.md", render_summary(rows, stamps) + "\n")
        print(f"wrote paper.md, paper.tex, paper.csv and paper_summary.md in {out}")
    return 0


def validate_metrics_command(args) -> int:
    from tqdm import tqdm

    from analysis.report.metric_ladder import render, render_verdicts, validate

    record = validate(args.data, args.resolution, args.count, args.runs, args.rounds,
                      progress=lambda it, **kw: tqdm(list(it), **kw))
    text = render(record)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "validation.json", json.dumps(record, indent=2))
    atomic_write(out / "validation.md", text + "\n")
    atomic_write(out / "validation_verdicts.md", render_verdicts(record) + "\n")
    print(f"\nwrote validation.json, validation.md and validation_verdicts.md in {out}")
    return 0


# Tools with a command line of their own: ``python -m analysis NAME ARGS`` hands ARGS to MODULE.main.
TOOLS = {
    "bench-scan": ("analysis.bench.bench_scan", "time the selective-scan backends against their targets"),
    "step-profile": ("analysis.bench.step_profile",
                     "where one CPU training step's time goes, against the machine's limit"),
    "trainer-rate": ("analysis.bench.trainer_rate", "the real trainer's images/s on a point's data path"),
    "sampler-sweep": ("analysis.report.sampler_sweep",
                      "a trained run's samples by solver and step count, scored and timed"),
    "gpu-check": ("analysis.bench.gpu_check", "the CUDA paths: parity, memory and throughput (writes results/gpu/)"),
    "doc-blocks": ("analysis.tools.doc_blocks", "refresh (or --check) the generated blocks of the README and docs"),
    "remake-records": ("analysis.tools.remake_records",
                       "rewrite the records that need no measurement, then the doc blocks"),
}


def run_tool(name: str, argv: list[str]) -> int:
    result = importlib.import_module(TOOLS[name][0]).main(argv)
    return result if isinstance(result, int) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="every registered model's parameter count (the README's table)").set_defaults(
        run=models_command)
    scales = commands.add_parser("scales", help="a grid's scales side by side: model, structure, recipe, quality")
    scales.add_argument("--grid", default="ablations", choices=sorted(GRIDS))
    scales.set_defaults(run=scales_command)
    flops = commands.add_parser("flops", help="count a model's forward GFLOPs (batch 1)")
    flops.add_argument("--model", choices=sorted(MODELS), metavar="NAME")
    flops.add_argument("--image-size", type=int, default=None,
                       help="image side in pixels (latent side = size / 8); default: the model's input")
    flops.add_argument("--pixels", action="store_true", help="the model sees pixels, not SD-VAE latents")
    flops.add_argument("--model-arg", action="extend", nargs="*", metavar="KEY=VALUE",
                       help="constructor arguments replacing the defaults, e.g. num_classes=1000 learn_sigma=true "
                            "(DiT's ImageNet setting)")
    flops.add_argument("--json", action="store_true", help="print one JSON object")
    flops.add_argument("--conventions", action="store_true",
                       help="the model (default: USM-B/1 and ZigMa-B/1) at 256 px, unconditional and text, under "
                            "every counting convention (multiply-adds, 2 per multiply-add, with and without the "
                            "scan, calflops' rules) and the published GFLOPs rebuilt by a written rule")
    flops.set_defaults(run=flops_command)

    profile = commands.add_parser("profile", help="efficiency table: params, GFLOPs, memory, throughput")
    profile.add_argument("--models", nargs="+", default=["USM-B/1", "ZigMa-B/1", "DiT-B/2"], choices=sorted(MODELS),
                         metavar="NAME")
    profile.add_argument("--image-size", nargs="+", type=int, default=[256], help="image sides in pixels")
    profile.add_argument("--batch", type=int, default=1, help="batch of the memory and throughput measurements")
    profile.add_argument("--device", default=default_device())
    profile.add_argument("--throughput-max-size", type=int, default=None,
                         help="time training/sampling only up to this size (default: 256 on CPU, all on GPU)")
    profile.add_argument("--out", default="results/profile")
    profile.set_defaults(run=profile_command)

    for name, run, text in (("table", table_command, "Markdown/LaTeX/CSV tables of a study (mean ± std over seeds)"),
                            ("plots", plots_command, "PNG/PDF plots of a study")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--study", required=True, help="study name: the folder results/<study>")
        sub.add_argument("--results", default="results", help="results root (default: results)")
        sub.add_argument("--record", default=None, metavar="DIR",
                         help="also copy the checked-in files into DIR, e.g. results/reference/ablations/cpu")
        sub.set_defaults(run=run)

    paper = commands.add_parser("paper", help="the paper's claims: published, measured here, verdict")
    paper.add_argument("--results", default="results", help="results root (default: results)")
    paper.add_argument("--reference", default=None, help="checked-in records (default: RESULTS/reference)")
    paper.add_argument("--format", choices=["md", "tex", "csv"], default="md")
    paper.add_argument("--summary", action="store_true", help="print the README's short table instead")
    paper.add_argument("--out", default=None, help="also write paper.md, .tex and .csv into this folder")
    paper.set_defaults(run=paper_command)

    ladder = commands.add_parser("validate-metrics", help="score sets of known order (real, degraded real, impostors, "
                                 "noise, checkpoints of a run): which quality metrics can be trusted")
    ladder.add_argument("--data", default="shapes-gray", help="dataset (default: the smoke study's shapes-gray)")
    ladder.add_argument("--resolution", type=int, default=16)
    ladder.add_argument("--count", type=int, default=128, help="images per set (the study's sample count)")
    ladder.add_argument("--runs", nargs="*", default=[], metavar="RUN_DIR",
                        help="runs evaluated during training (e.g. results/ablations/recipe-s0): their checkpoints")
    ladder.add_argument("--rounds", type=int, default=10, help="resamplings of each set for the spread")
    ladder.add_argument("--out", default="results/metric_validation", help="folder for the .json and .md record")
    ladder.set_defaults(run=validate_metrics_command)

    fid = commands.add_parser("fid", help="FID (and --kid, --isc) between a sample folder and a reference folder")
    fid.add_argument("samples")
    fid.add_argument("reference", help="folder of reference images (the training set)")
    fid.add_argument("--num", type=int, default=None, help="use the first N samples (default: all)")
    fid.add_argument("--fid-weights", default=None, help="Inception weights file (or $USM_FID_WEIGHTS)")
    fid.add_argument("--reference-name", default=None, help="cache the reference statistics under this name")
    fid.add_argument("--kid", action="store_true")
    fid.add_argument("--isc", action="store_true")
    fid.add_argument("--prc", action="store_true", help="precision and recall (k = 3) in the Inception features")
    fid.add_argument("--device", default=default_device())
    fid.set_defaults(run=fid_command)
    for name, (_, text) in TOOLS.items():  # their own parsers read what follows their name (--help too)
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv=None) -> int:
    from analysis.metrics.fid import FIDWeightsMissing
    from usm.cli import UsageError
    from usm.files import DamagedFile, WriteError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:  # every command, those with a command line of their own too, fails in one line
        args, rest = parser.parse_known_args(argv)
        if args.command in TOOLS:
            return run_tool(args.command, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.run(args)
    except (UsageError, FileNotFoundError, FIDWeightsMissing, WriteError, DamagedFile) as exc:  # one line each
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
