"""Collecting a study, its tables (Markdown, LaTeX, CSV) and plots, from a generated study."""

import math

import pandas as pd
import pytest

from analysis.collect import collect_study, loss_curves
from analysis.plots import write_plots
from analysis.tables import human, render, summarize, welch_p, write_tables
from tests.fake_study import make_study


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


def test_tables_in_three_formats(study):
    paths = write_tables(study)
    markdown = paths["md"].read_text()
    assert markdown.splitlines()[0] == ("| arm | seeds | final loss | params | GFLOPs | SWD (x1e3) | vs recipe "
                                        "| incomplete |")
    assert "| recipe | 3 | 0.0229 ± 0.0100 | 0.00 M ± 0.00 M | 1.50 | 12.0 ± 2.00 | (reference) | 0 |" in markdown
    assert "Welch's two-sided t-test" in markdown  # the caption says which test marks differences
    latex = paths["tex"].read_text()
    assert latex.startswith(r"\begin{tabular}") and r"\toprule" in latex and r"12.0 $\pm$ 2.00" in latex
    csv = pd.read_csv(paths["csv"])
    assert csv.set_index("arm").loc["no-skip", "swd_mean"] == pytest.approx(21.0)


def test_an_arm_beyond_seed_noise_is_marked_with_its_direction(study):
    summary = summarize(collect_study(study)).set_index("arm")
    p = summary.loc["no-skip", "swd_p"]
    assert 0 < p < 0.05  # 20, 22 vs 10, 12, 14: Welch's t-test
    markdown = write_tables(study)["md"].read_text()
    assert f"SWD worse (p={p:.2g})" in markdown


def test_significance_needs_two_seeds_and_spread():
    assert math.isnan(welch_p([1.0], [2.0, 3.0])) and math.isnan(welch_p([1.0, 1.0], [2.0, 2.0]))
    assert welch_p([1.0, 1.1, 0.9], [1.05, 0.95, 1.0]) > 0.5


def test_calibration_rows_and_ratio_to_the_floor():
    summary = pd.DataFrame([{"arm": "recipe", "seeds": 2, "incomplete": 0, "swd_mean": 60.0, "swd_std": 1.0}])
    calibration = {"data": {"swd": 30.0}, "noise": {"swd": 900.0}}
    markdown, _ = render(summary, ["swd"], calibration)
    lines = markdown.splitlines()
    assert lines[0] == "| arm | seeds | SWD (x1e3) | SWD / floor | vs recipe | incomplete |"
    assert "| recipe | 2 | 60.0 ± 1.00 | 2.00 | (reference) | 0 |" in lines
    assert "| data (real vs real) |  | 30.0 | 1.00 |  |  |" in lines and "| noise |  | 900 | 30.0 |  |  |" in lines


def test_numbers_are_written_for_people():
    assert [human(x) for x in (0.04008, 709.3, 12345.6, 0.000123456, 0, 8e-11)] == [
        "0.0401", "709", "12,346", "0.000123", "0", "< 0.0001"]
    assert human(492940, "params") == "0.49 M" and human(float("nan")) == "-"


def test_plots_are_written_from_the_files(study):
    paths = write_plots(study, study.parent)
    names = {p.name for p in paths}
    assert {"quality_vs_gflops.png", "quality_vs_gflops.pdf", "loss_curves.png", "efficiency.png"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    curves = loss_curves(study)
    assert curves.groupby("run")["step"].max()["no-skip-s2"] == 50


def test_missing_study_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: run the study first"):
        collect_study(tmp_path / "nope")
