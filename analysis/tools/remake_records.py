"""Rewrite the checked-in records that count or list rather than time (parameters, FLOP conventions,
scales, scan targets, the paper report), then the generated blocks that show them: what a change of
model, grid or FLOP code lands with (``tests/test_provenance.py`` fails until it does).

    python -m analysis remake-records          # rewrites what changed, prints each record's fate
    python -m analysis remake-records --check  # exit 1 if any record differs from what its code gives now

Timed records (benchmarks, studies) are remade by their own commands, named in their blocks' markers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path

from usm.files import atomic_write

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "results" / "reference"


@functools.cache
def _paper_rows():
    """The paper report's rows and stamps, computed once for both of its records."""
    from analysis.report.paper import read_records, rows_of

    with contextlib.chdir(ROOT):  # the report names its sources relative to the repository
        records = read_records("results/none-here", "results/reference")
        return rows_of(records), records.stamps()


def _paper(summary: bool) -> str:
    from analysis.report.paper import render, render_summary

    rows, stamps = _paper_rows()
    return render_summary(rows, stamps) if summary else render(rows, "md", stamps)


def makers() -> dict[str, object]:
    """record name -> a function giving its text (what the command in its marker prints)."""
    from analysis.bench.bench_scan import targets_table
    from analysis.metrics.flop_conventions import report
    from analysis.report.model_table import render as model_table
    from analysis.report.scale_table import render as scale_table
    from experiments.grids import GRIDS

    return {"models/parameters.md": lambda: model_table(GRIDS.values()), "models/flop_conventions.md": report,
            "ablations/scales.md": lambda: scale_table(GRIDS["ablations"]),
            "paper/scales.md": lambda: scale_table(GRIDS["paper"]),
            "bench/scan_targets.md": targets_table,
            # the paper report reads the records above (and the studies'): last
            "paper/claims.md": lambda: _paper(summary=False), "paper/summary.md": lambda: _paper(summary=True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis remake-records", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a record differs")
    args = parser.parse_args(argv)
    differ = []
    for name, make in makers().items():
        text = make().strip() + "\n"
        path = REFERENCE / name
        same = path.exists() and path.read_text() == text
        if not same:
            differ.append(name)
            if not args.check:
                atomic_write(path, text)
        print(f"{name}: {'unchanged' if same else 'differs' if args.check else 'rewritten'}", flush=True)
    if args.check:
        return 1 if differ else 0
    from analysis.tools.doc_blocks import main as doc_blocks

    return doc_blocks([])


if __name__ == "__main__":
    raise SystemExit(main())
