"""Which code a record measured: a digest of the source files a number depends on.

Every record a command writes names its code as ``SCOPE@DIGEST``: the scope says which files count
(the scan benchmark depends on ``usm/ssm/`` only, a study on the models, the trainer, the data, its
grid and the metrics), the digest is the first 12 hex digits of a SHA-256 over those files' paths
and bytes. A record whose digest differs from the code's is stale: the cheap ones (benchmarks, FLOP
and parameter tables) fail ``tests/test_provenance.py`` until re-measured; a study's generated block
says it was measured on older code (``python -m analysis doc-blocks``).

    python -m usm.provenance              # every scope's current digest
    python -m usm.provenance scan models  # these scopes' digests

    >>> stamp("scan").startswith("scan@"), len(code_digest("scan"))
    (True, 12)
    >>> parse_stamps("a table\\ncode: `scan@0123456789ab`\\n")
    ['scan@0123456789ab']
    >>> is_current("scan@0123456789ab")
    False
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNRECORDED = "unrecorded"  # the digest of a record written before records named their code

_MODELS = ("usm/models", "usm/layers", "usm/ssm", "baselines", "usm/flops.py", "analysis/metrics/flops.py")
_METRICS = (*(f"analysis/metrics/{name}.py" for name in
              ("quality", "swd", "manifold", "frechet", "fid", "shape_classifier", "run_cost")),
            *(f"analysis/report/{name}.py" for name in ("collect", "tables", "plots")))
# The files each kind of record depends on (paths relative to the repository, folders whole).
SCOPES: dict[str, tuple[str, ...]] = {
    "scan": ("usm/ssm", "analysis/bench/bench_scan.py"),
    "models": (*_MODELS, "analysis/report/model_table.py", "experiments/grid.py", "experiments/settings.py",
               "experiments/grids"),
    "flops": (*_MODELS, *(f"analysis/metrics/{name}" for name in
                          ("flop_conventions.py", "calflops_view.py", "claims.py", "paper_claims.json"))),
    "step": (*_MODELS, "usm/training", "usm/rectified_flow.py", "usm/precision.py", "usm/threads.py",
             "analysis/bench/step_profile.py"),
    "profile": (*_MODELS, "usm/training",
                *(f"analysis/metrics/{name}.py" for name in ("profile", "memory", "throughput"))),
    "sampler": ("usm", "baselines", *_METRICS, "analysis/report/sampler_sweep.py"),
    "metrics": ("usm/data", *_METRICS, "analysis/report/metric_ladder.py"),
}
# A grid's scales table depends on its grid; a study on everything that trains, samples and scores it.
GRID_SCOPE = ("experiments/grid.py", "experiments/settings.py", "experiments/grids/{name}.py",
              "experiments/grids/scales.py", "analysis/report/scale_table.py", *_MODELS)
STUDY_SCOPE = ("usm", "baselines", "experiments/grid.py", "experiments/settings.py", "experiments/point.py",
               "experiments/pipeline.py", "experiments/grids/{name}.py", "experiments/grids/scales.py", *_METRICS)
# Records that take under about two minutes to remake: a test fails when their code has changed.
CHEAP = ("scan", "models", "flops", "step", "grid")

STAMP = re.compile(r"(?<![\w-])((?:[a-z]+)(?::[\w-]+)?@(?:[0-9a-f]{12}|" + UNRECORDED + r"))(?![\w-])")


class UnknownScope(ValueError):
    pass


def scope_paths(scope: str) -> tuple[str, ...]:
    """The files a scope covers: a name of ``SCOPES``, or ``grid:NAME`` / ``study:NAME``."""
    kind, _, name = scope.partition(":")
    if kind in ("grid", "study") and name:
        return tuple(p.format(name=name) for p in (GRID_SCOPE if kind == "grid" else STUDY_SCOPE))
    if scope in SCOPES:
        return SCOPES[scope]
    raise UnknownScope(f"unknown code scope {scope!r}: use one of {', '.join(SCOPES)}, grid:NAME or study:NAME")


def missing_paths(scope: str, root: Path = ROOT) -> list[str]:
    """The paths a scope names that ``root`` lacks (an installed copy may leave data files out)."""
    return [rel for rel in scope_paths(scope) if not (root / rel).exists()]


def _files(paths, root: Path):
    for rel in paths:
        path = root / rel
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".toml")
                        and "__pycache__" not in p.parts)
        elif path.is_file():
            yield path


def code_digest(scope: str, root: Path = ROOT) -> str:
    """12 hex digits of a SHA-256 over the scope's files (relative path and bytes, in path order); a
    path the scope names but ``root`` lacks counts by its name, so such a copy has another digest."""
    digest = hashlib.sha256()
    for path in sorted(set(_files(scope_paths(scope), root))):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for rel in missing_paths(scope, root):
        digest.update(b"missing:" + rel.encode() + b"\0")
    return digest.hexdigest()[:12]


def stamp(scope: str, root: Path = ROOT) -> str:
    """``SCOPE@DIGEST``: what a record writes to name its code."""
    return f"{scope}@{code_digest(scope, root)}"


def stamp_line(stamps) -> str:
    """The last line of a Markdown record: ``code: `scan@...``` (several stamps: the record mixes them)."""
    stamps = [stamps] if isinstance(stamps, str) else sorted(set(stamps))
    return "code: " + ", ".join(f"`{s}`" for s in stamps)


def parse_stamps(text: str) -> list[str]:
    """The stamps a record carries: its ``code:`` lines (Markdown), ``"code"`` fields (JSON) or
    ``code`` column (CSV), in order of first appearance."""
    found = []
    for line in text.splitlines():
        if re.match(r'\s*("code"|code:)', line):
            found += STAMP.findall(line)
    header = text.split("\n", 1)[0].split(",")
    if "code" in header:  # a CSV record: one stamp per row
        found += [s for row in csv.DictReader(io.StringIO(text)) for s in (row.get("code") or "").split()]
    return list(dict.fromkeys(s for s in found if STAMP.fullmatch(s)))


def is_current(stamp_: str, root: Path = ROOT) -> bool:
    scope, _, digest = stamp_.rpartition("@")
    return digest != UNRECORDED and digest == code_digest(scope, root)


def main(argv=None) -> int:
    scopes = list(argv if argv is not None else sys.argv[1:]) or list(SCOPES)
    try:
        for scope in scopes:
            print(stamp(scope))
    except UnknownScope as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
