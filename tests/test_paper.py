"""The paper's claims beside our measurements: one cell of each table type, every format."""

import json
from pathlib import Path

import pytest

from analysis.__main__ import main as analysis_main
from analysis.metrics.claims import load_claims
from analysis.report.paper import paper_rows, read_records, render, render_summary, rows_of

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def write_run(study: Path, name: str, axes: dict, arm: str, seed: int, metrics: dict) -> None:
    run = study / name
    (run / "metrics").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"identity": {"model": {"model": "x"}, "train": {"seed": seed}},
                                                 "runtime": {"max_steps": 10}}))
    (run / "point.json").write_text(json.dumps({"arm": arm, "axes": axes, "seed": seed, "order": 0}))
    (run / "stats.jsonl").write_text(json.dumps({"step": 10, "loss": 0.1}) + "\n")
    (run / "metrics" / "quality.json").write_text(json.dumps(metrics))
    (run / "done").touch()


def row(rows, text):
    return next(r for r in rows if text in r.claim)


def test_every_claim_names_where_it_comes_from():
    claims = load_claims()
    assert "2504.13499" in claims["paper"]
    assert all(c["where"] and c["table"] in ("efficiency", "quality", "ablation") for c in claims["claims"])


@pytest.mark.slow
def test_efficiency_from_the_checked_in_profile(tmp_path):
    rows = paper_rows(tmp_path, REFERENCE)
    usm = row(rows, "GFLOPs, unconditional, 256 px: USM")
    assert (usm.published, usm.measured) == ("20.7", "50.9") and usm.verdict.startswith("differs (2.46x")
    ratio = row(rows, "unconditional, 256 px: USM / ZigMa")
    assert ratio.verdict == "same direction, differs in size"
    speed = row(rows, "speed")
    assert "CPU, not the paper's GPU" in speed.how and "python -m analysis gpu-check" in speed.verdict


@pytest.mark.slow
def test_gpu_check_records_take_precedence_for_speed_and_memory(tmp_path):
    (tmp_path / "gpu").mkdir()
    training = [{"model": "USM-B/1", "train_steps_per_s": 3.5, "peak_memory_gib": 13.0},
                {"model": "ZigMa-B/1", "train_steps_per_s": 2.0, "peak_memory_gib": 20.0}]
    (tmp_path / "gpu" / "gpu_check.json").write_text(json.dumps({"device": "NVIDIA H100", "training": training}))
    rows = paper_rows(tmp_path, REFERENCE)
    assert row(rows, "speed").measured == "1.75" and row(rows, "speed").verdict == "agrees"
    assert "NVIDIA H100" in row(rows, "memory").how and row(rows, "memory").measured == "0.65"


@pytest.mark.slow
def test_quality_not_measured_then_from_a_finished_fid_study(tmp_path):
    rows = paper_rows(tmp_path, REFERENCE)
    assert row(rows, "AFHQ").verdict.startswith("not measured yet")
    study = tmp_path / "paper"
    for model, fid in (("USM", 18.0), ("ZigMa", 30.0)):
        write_run(study, f"model={model},dataset=afhq-s0", {"model": model, "dataset": "afhq"},
                  f"model={model},dataset=afhq", 0, {"fid": fid})
    afhq = row(paper_rows(tmp_path, REFERENCE), "AFHQ")
    assert afhq.measured == "USM 18.00 vs ZigMa 30.00" and afhq.verdict.startswith("agrees; gap +12.00")


def laptop_study(results: Path, scores: dict) -> None:
    """The paper grid at cpu scale as the launcher leaves it: (model, dataset) -> per-seed metrics."""
    for order, ((model, data), per_seed) in enumerate(scores.items()):
        for seed, metrics in enumerate(per_seed):
            arm = f"model={model},dataset={data}"
            run = results / "paper" / f"{arm}-s{seed}"
            (run / "metrics").mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"identity": {}, "runtime": {"max_steps": 10}}))
            (run / "point.json").write_text(json.dumps({"arm": arm, "axes": {"model": model, "dataset": data},
                                                        "seed": seed, "order": order, "settings": {"data": data}}))
            (run / "stats.jsonl").write_text(json.dumps({"step": 10, "loss": 0.1}) + "\n")
            (run / "metrics" / "quality.json").write_text(json.dumps(metrics))
            (run / "done").touch()


def test_laptop_scale_quality_compares_each_rival_with_usm_on_its_dataset(tmp_path):
    rows = paper_rows(tmp_path, tmp_path / "nothing")
    assert row(rows, "laptop scale").verdict.startswith("not measured yet")
    cost = {"train_images_per_s": 90.0, "activation_mib": 20.0, "device": "cpu X"}
    laptop_study(tmp_path, {
        ("USM", "shapes-gray"): [{"shape_coverage": 0.60, **cost}, {"shape_coverage": 0.62, **cost}],
        ("ZigMa", "shapes-gray"): [{"shape_coverage": 0.30, "train_images_per_s": 30.0, "activation_mib": 40.0,
                                    "device": "cpu X"}] * 2,
        ("DiT", "shapes-gray"): [{"shape_coverage": 0.58, **cost}, {"shape_coverage": 0.66, **cost}],
        ("USM", "digits"): [{"precision": 0.30, **cost}, {"precision": 0.40, **cost}],
        ("ZigMa", "digits"): [{"precision": 0.50, **cost}, {"precision": 0.60, **cost}]})
    rows = paper_rows(tmp_path, tmp_path / "nothing")
    zigma = row(rows, "shapes-gray: USM vs ZigMa")
    assert zigma.measured.startswith("shape coverage: USM 0.61 vs ZigMa 0.3; ZigMa - USM -0.31, paired 95% interval [")
    assert zigma.measured.endswith(", 2 seeds") and zigma.verdict == "USM better: agrees in direction"
    assert "not FID" in zigma.how and str(tmp_path / "paper") in zigma.how
    assert row(rows, "shapes-gray: USM vs DiT").verdict.startswith("inconclusive")
    digits = row(rows, "digits: USM vs ZigMa")  # no validated metric on digits: pixel precision, marked
    assert digits.measured.startswith("precision (unvalidated): USM 0.35 vs ZigMa 0.55; ZigMa - USM 0.2")
    assert digits.verdict == "ZigMa better: differs in direction"
    assert not [r for r in rows if "digits: USM vs DiT" in r.claim]  # no DiT runs on digits
    speed = row(rows, "speed, USM relative to ZigMa, laptop comparison")
    assert speed.measured == f"{(90 * 4 / (30 * 2 + 90 * 2)):.2f}" and "one CPU core (cpu X)" in speed.how
    assert row(rows, "memory, USM relative to ZigMa, laptop comparison").measured == f"{20 / 30:.2f}"


def test_ablation_from_a_smoke_study_is_a_direction_not_a_fid(tmp_path):
    """The smoke study's proxy is its first validated headline metric (higher is better), not SWD."""
    study = tmp_path / "ablations"
    for seed, (recipe, noskip) in enumerate(((0.40, 0.10), (0.44, 0.12))):
        write_run(study, f"recipe-s{seed}", {"skip_conn": True}, "recipe", seed,
                  {"swd": 50.0, "shape_coverage": recipe})
        write_run(study, f"skip_conn=False-s{seed}", {"skip_conn": False}, "skip_conn=False", seed,
                  {"swd": 40.0, "shape_coverage": noskip})
    skip = row(paper_rows(tmp_path, tmp_path / "nothing"), "skip connections")
    assert skip.measured.startswith("recipe 0.42 -> skip_conn=False 0.11 (shape coverage, 2 seeds, paired 95% "
                                    "interval of the difference [")
    assert skip.measured.endswith("]: worse)")  # -0.30 and -0.32: an interval of width 0.25 around -0.31
    assert skip.verdict.startswith("agrees in direction") and "shape coverage, not FID" in skip.how


@pytest.mark.parametrize("fmt, needle", [("md", "### Efficiency"), ("tex", r"\begin{tabular}"),
                                         ("csv", "table,claim,published,measured,how,verdict")])
def test_formats(tmp_path, fmt, needle):
    assert needle in render(paper_rows(tmp_path, REFERENCE), fmt)


def test_command_writes_all_formats(tmp_path, capsys):
    out = tmp_path / "tables"
    assert analysis_main(["paper", "--results", str(tmp_path), "--reference", str(REFERENCE), "--out", str(out)]) == 0
    assert "| GFLOPs, unconditional, 256 px: USM | 20.7 | 50.9 |" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"paper.md", "paper.tex", "paper.csv", "paper_summary.md"}


def test_the_checked_in_report_is_the_commands_output(monkeypatch):
    """docs/paper.md and the README show these records (tests/test_readme.py): they must be what the
    command prints from the checked-in records now, stamps included."""
    monkeypatch.chdir(REFERENCE.parents[1])
    records = read_records("results/none-here", "results/reference")
    rows, stamps = rows_of(records), records.stamps()
    assert (REFERENCE / "paper" / "claims.md").read_text().strip() == render(rows, "md", stamps).strip()
    assert (REFERENCE / "paper" / "summary.md").read_text().strip() == render_summary(rows, stamps).strip()
    assert "code: `flops@" in render_summary(rows, stamps)


@pytest.mark.parametrize("what", ["unconditional", "text-conditioned"])
def test_the_published_gflops_are_rebuilt_within_half_a_percent(tmp_path, what):
    """calflops' rules on our models plus the written rule land on each published value; every count
    of the whole model puts USM / ZigMa near 0.5, not the abstract's one-third."""
    rows = paper_rows(tmp_path, REFERENCE)
    for model in ("USM", "ZigMa"):
        rebuilt = row(rows, f"{what}, 256 px: {model}, calflops on the released code, rebuilt")
        assert abs(float(rebuilt.measured) / float(rebuilt.published) - 1) <= 0.005
        assert rebuilt.verdict.startswith("agrees")
    ratios = row(rows, f"{what}, 256 px: USM / ZigMa under each convention")
    full = [float(part.rsplit(" ", 1)[1]) for part in ratios.measured.split("; ")[:-1]]
    assert all(0.45 < value < 0.6 for value in full) and ratios.measured.endswith(ratios.published)


def test_flop_conventions_from_the_command_line(capsys):
    assert analysis_main(["flops", "--conventions", "--model", "ZigMa-B/1", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert [c["text"] for c in counts] == [False, True]
    for c in counts:
        assert c["flops"] == pytest.approx(2 * c["macs"]) and c["macs_no_scan"] < c["macs"]
        assert c["published_rebuilt"] == pytest.approx(
            c["calflops"] + sum(c["rule"]["added"].values()) - sum(c["rule"]["dropped"].values()))
    assert analysis_main(["flops", "--conventions", "--image-size", "512"]) == 2
    assert "--conventions counts the paper's setting" in capsys.readouterr().err
    assert analysis_main(["flops"]) == 2
    assert "needs --model" in capsys.readouterr().err


def test_the_conventions_record_is_the_commands_output(capsys):
    """docs/metrics.md shows results/reference/models/flop_conventions.md: what `flops --conventions` prints
    (the counts are cached from the tests above, so this costs no second count)."""
    assert analysis_main(["flops", "--conventions"]) == 0
    assert capsys.readouterr().out.strip() == (Path(REFERENCE) / "models" / "flop_conventions.md").read_text().strip()
