"""The metric validation: sets of known order, and the headline metrics are the ones that pass."""

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.metrics.quality import HEADLINE
from analysis.report.metric_ladder import (
    IMPOSTORS,
    LADDER,
    checkpoint_series,
    known_sets,
    render,
    render_verdicts,
    spearman,
    validate,
)

RECORD = Path(__file__).parent.parent / "results" / "reference" / "metrics" / "validation.json"


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def test_the_sets_are_what_they_claim():
    sets = known_sets("shapes-gray", 16, 32)
    real = sets["real"].astype(float)
    assert list(sets) == [*LADDER, *IMPOSTORS] and all(s.shape == real.shape for s in sets.values())
    distance = [np.abs(sets[name].astype(float) - real).mean() for name in LADDER]
    assert distance == sorted(distance) and distance[0] == 0  # each rung further from the real images
    assert (np.sort(sets["shuffled"].reshape(32, -1), 1) == np.sort(sets["real"].reshape(32, -1), 1)).all()

    def bright(images):
        flat = images.reshape(len(images), -1).astype(float)
        middle = (flat.min(1, keepdims=True) + flat.max(1, keepdims=True)) / 2
        return (flat > middle).mean(1)

    # blobs: the shape's area (within the edge pixels) and its brightness, on the same background
    assert np.abs(bright(sets["blobs"]) - bright(sets["real"])).mean() < 0.03
    blobs, real = sets["blobs"].reshape(32, -1).astype(int), sets["real"].reshape(32, -1).astype(int)
    assert np.abs(blobs.max(1) - real.max(1)).mean() < 12 and np.abs(blobs.min(1) - real.min(1)).mean() < 12


@pytest.mark.slow
def test_headline_metrics_order_the_ladder_and_see_through_the_impostors():
    verdicts = validate("shapes-gray", 16, 64, rounds=0)["verdicts"]
    for metric in HEADLINE:
        assert verdicts[metric]["ladder_spearman"] >= 0.9 and not verdicts[metric]["impostors_above"], metric
    # SWD scores a shapeless blob most of the way to a real image (0.93 at 128 images, 0.72 at 64)
    assert verdicts["swd"]["impostors_relative"]["blobs"] > 0.6
    assert verdicts["recall"]["ladder_spearman"] < 0.5  # noise "recalls" the data (Naeem et al.)


def test_the_checked_in_validation_record_names_exactly_the_headline_metrics():
    record = json.loads(RECORD.read_text())
    passed = {metric for metric, verdict in record["verdicts"].items() if verdict["passes"]}
    assert passed == set(HEADLINE)
    assert len(record["checkpoints"]) >= 6  # validated on the checkpoints of the study's own runs
    assert "| shape coverage " in render(record)
    # the Markdown records are the command's renderings of this JSON (docs/metrics.md shows the verdicts)
    assert RECORD.with_suffix(".md").read_text().strip() == render(record).strip()
    verdicts = RECORD.with_name("validation_verdicts.md").read_text().strip()
    assert verdicts == render_verdicts(record).strip() and render(record).startswith(verdicts.split("\n\n")[0])


def test_a_checkpoint_series_is_read_in_step_order_at_one_count(tmp_path):
    run = tmp_path / "run"
    for name, step, count in (("curve/step-000000020", 20, 4), ("curve/step-000000010", 10, 4), ("final", 30, 8)):
        folder = run / "samples" / name
        folder.mkdir(parents=True)
        np.savez(folder / "samples.npz", images=np.full((count, 2, 2, 1), step, np.uint8))
        (folder / "provenance.json").write_text(json.dumps({"step": step}))
    series = checkpoint_series(run)
    assert [step for step, _ in series] == [10, 20, 30] and series[0][1].mean() == 10
    assert {len(images) for _, images in series} == {4}  # the final samples cut to the curve's count
    assert spearman([1, 2, 3], [10, 20, 30]) == 1.0 and spearman([0, 0, 0], [10, 20, 30]) == 0.0


def test_a_run_without_a_learning_curve_is_one_line(tmp_path, capsys):
    from analysis.__main__ import main

    assert main(["validate-metrics", "--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "0 evaluated checkpoint(s) under samples/; a series needs at least 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
