"""Collecting a study, its tables (Markdown, LaTeX, CSV), paired comparisons, learning curves and plots."""

import json
import math

import pandas as pd
import pytest

from analysis.report.collect import collect_study, learning_curves, loss_curves
from analysis.report.plots import write_plots
from analysis.report.tables import human, paired_difference, render, summarize, write_tables
from tests.fake_study import make_study
from tests.markdown_table import rows as cells


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "results" / "ablations")


def test_collect_marks_incomplete_runs_instead_of_dropping_them(study):
    frame = collect_study(study)
    assert len(frame) == 6
    incomplete = frame[frame["status"] == "incomplete"]
    assert incomplete["run"].tolist() == ["no-skip-s2"]
    assert incomplete["why"].iloc[0] == "training (50/100 steps)"
    assert set(frame["axis.skip_conn"]) == {True, False}
    assert frame.loc[frame["run"] == "recipe-s1", "swd"].item() == 12.0


def test_summary_mean_and_spread_over_seeds(study):
    summary = summarize(collect_study(study)).set_index("arm")
    assert summary.loc["recipe", "swd_mean"] == pytest.approx(12.0)
    assert summary.loc["recipe", "swd_std"] == pytest.approx(2.0)  # sample std of 10, 12, 14
    assert summary.loc["no-skip", "swd_mean"] == pytest.approx(21.0)
    assert (summary.loc["no-skip", "seeds"], summary.loc["no-skip", "incomplete"]) == (2, 1)


def test_tables_lead_with_the_headline_and_mark_unvalidated_metrics(study):
    paths = write_tables(study)
    markdown = paths["md"].read_text()
    rows = cells(markdown)
    assert rows[0] == ["arm", "seeds", "final loss", "params", "GFLOPs", "shape coverage", "vs recipe", "incomplete"]
    assert ["recipe", "3", "0.0229 ± 0.0100", "0.00 M ± 0.00 M", "1.50", "0.420 ± 0.0200", "(reference)", "0"] in rows
    assert "SWD" not in markdown.splitlines()[0]  # failed the validation: in the CSV, not the table
    assert "95% t-interval" in markdown  # the caption says how differences are judged
    latex = paths["tex"].read_text()
    assert latex.startswith(r"\begin{tabular}") and r"\toprule" in latex and r"0.420 $\pm$ 0.0200" in latex
    csv = pd.read_csv(paths["csv"])
    assert csv.set_index("arm").loc["no-skip", "swd_mean"] == pytest.approx(21.0)
    assert "shape_coverage_sampling_std" in pd.read_csv(paths["runs"]).columns


def test_arms_are_compared_seed_by_seed_with_an_interval(study):
    summary = summarize(collect_study(study)).set_index("arm")
    # seeds 0 and 1 only (seed 2 of no-skip is incomplete): differences -0.30 and -0.29
    assert summary.loc["no-skip", "shape_coverage_diff"] == pytest.approx(-0.295)
    low, high = summary.loc["no-skip", ["shape_coverage_low", "shape_coverage_high"]]
    # the sampling floor (two runs' bootstrap variances, 2 x 0.02^2) is wider than the seeds' spread
    half = 12.706 * math.sqrt(2 * 0.02 ** 2 / 2)
    assert (low, high) == (pytest.approx(-0.295 - half, abs=1e-3), pytest.approx(-0.295 + half, abs=1e-3))
    assert summary.loc["no-skip", "shape_coverage_outcome"] == "worse"  # higher is better, and it is lower
    assert "shape coverage worse" in write_tables(study)["md"].read_text()
    rows = cells((study / "comparisons.md").read_text())
    assert rows[2][:3] + rows[2][4:] == ["no-skip", "shape coverage", "-0.295", "worse", "2"]


def test_paired_interval_is_honest_about_few_seeds():
    seeds = pd.Index([0, 1])
    same = paired_difference(pd.Series([1.0, 1.1], seeds), pd.Series([1.05, 1.0], seeds), True)
    assert same["outcome"] == "inconclusive" and same["low"] < 0 < same["high"]
    one = paired_difference(pd.Series([1.0], [0]), pd.Series([2.0], [0]), True)
    assert one["outcome"] == "one seed" and math.isnan(one["low"])
    # two seeds that happen to agree exactly: zero spread, but the draw of the samples still counts
    lucky = paired_difference(pd.Series([0.5, 0.6], seeds), pd.Series([0.52, 0.62], seeds), False,
                              sampling_var=pd.Series([0.03 ** 2 * 2] * 2, seeds))
    assert lucky["outcome"] == "inconclusive" and lucky["seeds_needed"] > 10
    clear = paired_difference(pd.Series([0.1, 0.1, 0.12, 0.11], range(4)), pd.Series([0.5, 0.52, 0.5, 0.51], range(4)),
                              False)
    assert clear["outcome"] == "worse" and clear["seeds_needed"] == 2


def test_calibration_rows():
    summary = pd.DataFrame([{"arm": "recipe", "reference": "recipe", "seeds": 2, "incomplete": 0, "swd_mean": 60.0,
                             "swd_std": 1.0}])
    calibration = {"data": {"swd": 30.0}, "noise": {"swd": 900.0}}
    rows = cells(render(summary, ["swd"], {"shapes": calibration})[0])
    assert rows[0] == ["arm", "seeds", "SWD (x1e3) †", "vs recipe", "incomplete"]
    assert ["recipe", "2", "60.0 ± 1.00", "(reference)", "0"] in rows
    assert ["data (held-out real)", "", "30.0", "", ""] in rows and ["noise", "", "900", "", ""] in rows
    two = cells(render(summary, ["swd"], {"digits": {"data": {"swd": 20.0}}, "shapes": calibration})[0])
    assert ["data (held-out real): digits", "", "20.0", "", ""] in two
    assert ["data (held-out real): shapes", "", "30.0", "", ""] in two and ["noise: shapes", "", "900", "", ""] in two


def test_learning_curves_are_collected_and_tabled(study):
    curves = learning_curves(study)
    assert len(curves) == 11 and list(curves.columns[:3]) == ["run", "arm", "seed"]
    assert curves.groupby("run")["step"].max()["no-skip-s2"] == 50
    paths = write_tables(study)
    table = paths["curve"].read_text()
    rows = cells(table.split("\n\n", 1)[1])
    assert rows[0] == ["arm", "step 50 (400 images)", "step 100 (800 images)"]
    assert rows[2] == ["recipe", "0.210 ± 0.0100", "0.420 ± 0.0200"]


def test_numbers_are_written_for_people():
    assert [human(x) for x in (0.04008, 709.3, 12345.6, 0.000123456, 0, 8e-11)] == [
        "0.0401", "709", "12,346", "0.000123", "0", "< 0.0001"]
    assert human(492940, "params") == "0.49 M" and human(float("nan")) == "-"


def test_plots_are_written_from_the_files(study):
    paths = write_plots(study, study.parent)
    names = {p.name for p in paths}
    assert {"quality_vs_gflops.png", "quality_vs_gflops.pdf", "loss_curves.png", "efficiency.png",
            "learning_curves.png"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    curves = loss_curves(study)
    assert curves.groupby("run")["step"].max()["no-skip-s2"] == 50


def test_record_copies_the_checked_in_files_straight_into_the_reference_folder(study, capsys):
    from analysis.__main__ import main

    dest = study.parent / "reference" / "ablations" / "smoke"
    results = str(study.parent)
    assert main(["table", "--study", "ablations", "--results", results, "--record", str(dest)]) == 0
    assert main(["plots", "--study", "ablations", "--results", results, "--record", str(dest)]) == 0
    names = {p.name for p in dest.iterdir()}
    assert {"table.md", "headline.md", "comparisons.md", "runs.csv", "curve.md", "learning_curves.png",
            "loss_curves.png", "efficiency.png"} <= names
    assert not names & {"table.tex", "table.csv", "efficiency.pdf"}  # these stay in the study's folder
    assert (dest / "table.md").read_bytes() == (study / "table.md").read_bytes()
    assert (dest / "efficiency.png").read_bytes() == (study / "plots" / "efficiency.png").read_bytes()


def test_missing_study_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: run the study first"):
        collect_study(tmp_path / "nope")


@pytest.mark.slow
def test_a_study_over_two_datasets_shows_each_ones_real_images_floor_and_ceiling(tmp_path, monkeypatch):
    import json

    import numpy as np

    from analysis.report.plots import sample_rows
    from analysis.report.tables import study_calibrations
    from usm.data.embedded import EMBEDDED

    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "control"
    for data in ("shapes-gray", "digits"):
        run = root / f"{data}-s0"
        (run / "samples" / "final").mkdir(parents=True)
        (run / "point.json").write_text(json.dumps({"arm": data, "seed": 0, "settings": {
            "data": data, "resolution": 16, "metric": "pixel", "num_samples": 8}}))
        np.savez(run / "samples" / "final" / "samples.npz", images=np.full((8, 16, 16, 1), 7, np.uint8))
    frame = pd.DataFrame([{"run": f"{d}-s0", "arm": d, "seed": 0, "status": "done"} for d in ("shapes-gray", "digits")])
    rows = sample_rows(root, frame, count=4)
    assert [label for label, _ in rows] == ["real: shapes-gray", "shapes-gray, seed 0",
                                            "real: digits", "digits, seed 0"]
    assert all(images.shape == (4, 16, 16, 1) for _, images in rows)
    np.testing.assert_array_equal(rows[2][1], EMBEDDED["digits"].images(16)[0][:4])  # the digits' own real images
    np.testing.assert_array_equal(rows[0][1], EMBEDDED["shapes-gray"].images(16)[0][:4])
    calibrations = study_calibrations(root)
    assert list(calibrations) == ["digits", "shapes-gray"]
    assert calibrations["digits"]["dataset"] == "digits" and "classifier" not in calibrations["digits"]
    assert calibrations["shapes-gray"]["data"]["shape_coverage"] > 0.5


def test_the_caption_reports_the_last_launchs_wall_time_and_survives_a_torn_log(tmp_path):
    import pandas as pd

    from analysis.report.collect import last_launch
    from analysis.report.tables import caption

    assert last_launch(tmp_path) is None
    log = tmp_path / "launches.jsonl"
    log.write_text('{"date": "d1", "seconds": 9, "parallel": 1, "cpus": 1, "points": {"a": 9}}\n'
                   '{"date": "d2", "seconds": 130.4, "parallel": 2, "cpus": 2, "points": {"a": 64.2, "b": 71.0}}\n')
    launch = last_launch(tmp_path)
    assert launch["date"] == "d2"
    text = caption(pd.DataFrame({"arm": ["recipe"]}), None, launch)
    assert "Wall time of the last launch (d2): 2 points, 2 at a time on 2 CPUs, in 130 s with the calibration " \
           "(points of 64-71 s)." in text
    log.write_text(log.read_text() + '{"date": "d3", "sec')  # a kill during the append
    assert last_launch(tmp_path)["date"] == "d2"
    assert "Wall time" not in caption(pd.DataFrame({"arm": ["recipe"]}), None, None)


def two_dataset_study(root):
    """A factorial study: models A (first) and B on datasets d1 and d2, two seeds; B is better on d1."""
    scores = {("A", "d1"): [0.40, 0.42], ("B", "d1"): [0.60, 0.63],
              ("A", "d2"): [0.10, 0.12], ("B", "d2"): [0.11, 0.12]}
    for order, ((model, data), values) in enumerate(scores.items()):
        for seed, value in enumerate(values):
            run = root / f"model={model},dataset={data}-s{seed}"
            (run / "metrics").mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"identity": {"model": {"model": model}},
                                                         "runtime": {"max_steps": 10}}))
            (run / "point.json").write_text(json.dumps({
                "arm": f"model={model},dataset={data}", "axes": {"model": model, "dataset": data}, "seed": seed,
                "order": order, "settings": {"data": data}}))
            (run / "stats.jsonl").write_text(json.dumps({"step": 10, "loss": 0.1}) + "\n")
            (run / "metrics" / "quality.json").write_text(json.dumps({"shape_coverage": value, "precision": value}))
            (run / "done").touch()
    return root


def test_arms_are_compared_only_with_the_first_arm_of_their_own_dataset(tmp_path):
    study = two_dataset_study(tmp_path / "paper")
    summary = summarize(collect_study(study)).set_index("arm")
    assert summary["reference"].to_dict() == {
        "model=A,dataset=d1": "model=A,dataset=d1", "model=B,dataset=d1": "model=A,dataset=d1",
        "model=A,dataset=d2": "model=A,dataset=d2", "model=B,dataset=d2": "model=A,dataset=d2"}
    assert pd.isna(summary.loc["model=A,dataset=d2", "shape_coverage_diff"])  # a reference, not compared with d1
    assert summary.loc["model=B,dataset=d2", "shape_coverage_diff"] == pytest.approx(0.005)
    assert summary.loc["model=B,dataset=d1", "shape_coverage_outcome"] == "better"
    paths = write_tables(study)
    table = cells(paths["md"].read_text())
    assert table[0][-2] == "vs its dataset's first arm"
    assert [r[-2] for r in table[2:6]] == ["(reference)", "shape coverage better", "(reference)", "inconclusive"]
    assert "no arm is compared across datasets" in paths["md"].read_text()
    rows = cells(paths["comparisons"].read_text())
    assert rows[0][:3] == ["arm", "compared with", "metric"]
    assert [r[:2] for r in rows[2:] if r[2] == "shape coverage"] == [
        ["model=B,dataset=d1", "model=A,dataset=d1"], ["model=B,dataset=d2", "model=A,dataset=d2"]]


def test_learning_curves_carry_the_training_time_up_to_each_evaluation(study):
    """stats.jsonl logs every 10 steps at a rate; an evaluation at step 50 has the seconds of steps
    1-50 behind it, whatever the evaluations themselves took."""
    import json

    from analysis.report.collect import training_clock

    clock = training_clock([{"step": 10, "steps_per_s": 5.0}, {"step": 20, "steps_per_s": 2.0},
                            {"step": 20, "steps_per_s": 9.0}, {"step": 40, "steps_per_s": 4.0}])
    assert (clock(0), clock(10), clock(20), clock(30), clock(40), clock(41)) == (0.0, 2.0, 7.0, 7.0, 12.0, None)
    run = study / "recipe-s0"
    (run / "stats.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.1, "steps_per_s": 10.0}) + "\n"
                                             for s in range(10, 101, 10)))
    curves = learning_curves(study).set_index(["run", "step"])
    assert curves.loc[("recipe-s0", 50), "train_seconds"] == pytest.approx(5.0)
    assert curves.loc[("recipe-s0", 100), "train_seconds"] == pytest.approx(10.0)
    from analysis.report.plots import learning_curves_plot

    names = [p.name for p in learning_curves_plot(study, study, "train_seconds")]
    assert names == ["learning_curves_by_time.png", "learning_curves_by_time.pdf"]
