"""Collecting a study, its tables (Markdown, LaTeX, CSV) and plots, from a generated study."""

import pandas as pd
import pytest

from analysis.collect import collect_study, loss_curves
from analysis.plots import write_plots
from analysis.tables import summarize, write_tables
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
    assert markdown.splitlines()[0] == "| arm | final_loss | gflops | params | swd | seeds | incomplete |"
    assert "| recipe | 0.02291 ± 0.01 | 1.5 ± 0 | 2000 ± 1000 | 12 ± 2 | 3 | 0 |" in markdown
    latex = paths["tex"].read_text()
    assert latex.startswith(r"\begin{tabular}") and r"\toprule" in latex and r"12 $\pm$ 2" in latex
    assert r"no-skip & 0.01791 $\pm$ 0.007071 & 1.2 $\pm$ 0 & 1500 $\pm$ 707.1 & 21 $\pm$ 1.414 & 2 & 1 \\" in latex
    csv = pd.read_csv(paths["csv"])
    assert csv.set_index("arm").loc["no-skip", "swd_mean"] == pytest.approx(21.0)


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
