"""Records name the code they measured (``usm/provenance.py``): a cheap record whose code changed
fails here until re-measured; a study's generated block says it was measured on older code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.tools.doc_blocks import ROOT, blocks, pages, shown
from experiments.point import record_code
from usm.provenance import (
    CHEAP,
    UNRECORDED,
    UnknownScope,
    code_digest,
    is_current,
    missing_paths,
    parse_stamps,
    scope_paths,
    stamp,
    stamp_line,
)

REFERENCE = ROOT / "results" / "reference"
# Records any machine remakes in about two minutes: their stamp must be the code's.
CHEAP_RECORDS = ("bench/scan_*.json", "bench/scan_*.md", "models/parameters.md", "models/flop_conventions.md",
                 "*/scales.md", "bench/step_batches_cpu.md")


def _tree(root: Path) -> None:
    (root / "usm" / "ssm").mkdir(parents=True)
    (root / "analysis" / "bench").mkdir(parents=True)
    (root / "usm" / "ssm" / "scan.py").write_text("A = 1\n")
    (root / "analysis" / "bench" / "bench_scan.py").write_text("B = 1\n")
    (root / "usm" / "other.py").write_text("C = 1\n")


def test_a_digest_follows_the_files_of_its_scope_and_no_others(tmp_path):
    _tree(tmp_path)
    first = code_digest("scan", tmp_path)
    (tmp_path / "usm" / "other.py").write_text("C = 2\n")  # outside the scan's scope
    (tmp_path / "usm" / "ssm" / "__pycache__").mkdir()
    (tmp_path / "usm" / "ssm" / "__pycache__" / "scan.cpython-311.pyc").write_bytes(b"\0")
    assert code_digest("scan", tmp_path) == first
    (tmp_path / "usm" / "ssm" / "scan.py").write_text("A = 2\n")
    assert code_digest("scan", tmp_path) != first
    (tmp_path / "usm" / "ssm" / "scan.py").write_text("A = 1\n")
    assert code_digest("scan", tmp_path) == first  # content, not modification time
    (tmp_path / "usm" / "ssm" / "scan.py").rename(tmp_path / "usm" / "ssm" / "renamed.py")
    assert code_digest("scan", tmp_path) != first  # a moved file is another tree


def test_scopes_name_real_files_and_unknown_ones_are_refused(tmp_path):
    for scope in (*CHEAP[:-1], "profile", "sampler", "metrics", "grid:ablations", "study:paper"):
        assert stamp(scope).startswith(scope + "@") and is_current(stamp(scope)), scope
        assert missing_paths(scope) == [], scope  # a renamed file must be renamed in its scope too
    _tree(tmp_path)  # a copy that lacks a file of the scope still digests, differently
    full = code_digest("scan", tmp_path)
    (tmp_path / "analysis" / "bench" / "bench_scan.py").unlink()
    assert missing_paths("scan", tmp_path) == ["analysis/bench/bench_scan.py"]
    assert code_digest("scan", tmp_path) != full
    assert "experiments/grids/control.py" in scope_paths("study:control")
    with pytest.raises(UnknownScope, match="unknown code scope 'scna'"):
        code_digest("scna")
    assert not is_current(f"scan@{UNRECORDED}")


def test_stamps_are_read_from_markdown_json_and_csv():
    now = stamp("scan")
    assert parse_stamps(f"| a |\n\n{stamp_line(now)}\n") == [now]
    assert parse_stamps(json.dumps({"seconds": 1, "code": now}, indent=2)) == [now]
    csv = f"run,code,why\na-s0,{now},\"x, y\"\nb-s0,study:paper@{UNRECORDED} {now},\n"
    assert parse_stamps(csv) == [now, f"study:paper@{UNRECORDED}"]
    assert parse_stamps("prose that mentions scan@0123456789ab in passing\n") == []  # only code lines count


def test_every_record_a_page_shows_names_its_code():
    unnamed = sorted({path for page in pages() for path, _, _ in blocks(page.read_text())
                      if not parse_stamps((ROOT / path).read_text())})
    assert not unnamed, f"records without a code stamp (the command that writes them adds it): {unnamed}"


def test_cheap_records_were_measured_on_this_code():
    """A kernel, model or grid change lands with its re-measurement: the stamp of each cheap record
    must be the code's digest now. The generated block's marker names the command that remakes it."""
    records = sorted({p for pattern in CHEAP_RECORDS for p in REFERENCE.glob(pattern)})
    assert len(records) >= 8
    stale = []
    for record in records:
        stamps = parse_stamps(record.read_text())
        assert stamps, f"{record.name} names no code"
        stale += [(record.name, s) for s in stamps if not is_current(s)]
    for record in REFERENCE.rglob("*"):  # and a cheap scope named by any other record
        if record.suffix in (".md", ".json", ".csv"):
            stale += [(record.name, s) for s in parse_stamps(record.read_text())
                      if s.partition(":")[0].partition("@")[0] in CHEAP and not is_current(s)]
    assert not stale, f"re-measure these records, their code changed since: {sorted(set(stale))}"


def test_a_block_of_a_record_from_older_code_says_so_with_its_command(tmp_path):
    (tmp_path / "old.md").write_text(f"| a |\n\n{stamp_line(f'study:paper@{UNRECORDED}')}\n")
    (tmp_path / "new.md").write_text(f"| a |\n\n{stamp_line(stamp('scan'))}\n")
    (tmp_path / "none.md").write_text("| a |\n")
    old = shown("old.md", "python experiments/run.py --grid paper", tmp_path)
    assert old.endswith("**Measured on older code** (`study:paper` changed since);\nmade by: "
                        "python experiments/run.py --grid paper.")
    assert shown("new.md", "cmd", tmp_path) == (tmp_path / "new.md").read_text().strip()
    assert "the record names no code" in shown("none.md", "", tmp_path)


def test_a_point_records_each_code_it_ran_under_once(tmp_path):
    from analysis.report.collect import code_stamps

    record_code(tmp_path, "paper")
    record_code(tmp_path, "paper")
    assert code_stamps(tmp_path, "paper") == [stamp("study:paper")]
    (tmp_path / "code.txt").write_text(f"study:paper@{'0' * 12}\n")  # trained before a change
    record_code(tmp_path, "paper")
    assert code_stamps(tmp_path, "paper") == [f"study:paper@{'0' * 12}", stamp("study:paper")]
    assert code_stamps(tmp_path / "missing", "paper") == [f"study:paper@{UNRECORDED}"]
