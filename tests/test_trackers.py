"""Trackers through accelerate: what the trainer logs reaches TensorBoard (read back with
TensorBoard's own reader), a tracker that is not installed is one line before anything is written,
and stats.jsonl carries the run's cost (seconds per thousand images, peak memory)."""

import json
import re

import pytest

from usm.train import main as train_main


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def args(run, *extra):
    return ["--model", "DiT-T/2", "--data", "shapes", "--run-dir", str(run), "--max-steps", "4", "--batch-size", "4",
            "--ckpt-every", "2", "--log-every", "1", *extra]


@pytest.mark.slow
def test_tensorboard_gets_the_stats_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert train_main(args(run, "--log-with", "tensorboard")) == 0
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    events = sorted((run / "trackers").rglob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in run.rglob("*"))
    scalars = {}
    for event_file in events:
        reader = EventAccumulator(str(event_file))
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in reader.Scalars(tag)})
    for name in ("loss", "lr", "grad_norm", "images_per_s", "sec_per_kimg", "peak_rss_mib"):
        assert scalars[name] == pytest.approx({r["step"]: r[name] for r in stats}, rel=1e-6), name
    assert json.loads((run / "config.json").read_text())["runtime"]["log_with"] == "tensorboard"


def test_a_tracker_that_is_not_installed_is_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    import usm.training.trackers as trackers

    monkeypatch.setattr(trackers, "_available", lambda name: False)
    for name, needle in [("wandb", "pip install wandb"), ("all", "no tracker is installed")]:
        assert train_main(args(tmp_path / "run", "--log-with", name)) == 2
        err = capsys.readouterr().err
        errors = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and "Traceback" not in err, err
        assert not (tmp_path / "run" / "config.json").exists()


def test_stats_record_what_the_run_costs(tmp_path):
    run = tmp_path / "run"
    assert train_main(args(run)) == 0
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    for record in stats:
        per_image = record["steps_per_s"] * 4
        assert record["images_per_s"] == pytest.approx(per_image)
        assert record["sec_per_kimg"] == pytest.approx(1000 / per_image)
        assert 50 < record["peak_rss_mib"] < 1e5  # a torch process holds tens of MiB at least
    assert not (run / "trackers").exists()  # --log-with none: no tracker folder


@pytest.mark.slow
def test_a_study_point_sends_its_learning_curve_and_samples_to_tensorboard(tmp_path, no_debugger):
    """--set log_with=tensorboard: every point's trainer stats, and each learning-curve
    evaluation's quality numbers and samples at its step."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.tiny_study import ONE_POINT, run_one_point

    results = tmp_path / "results"
    assert run_one_point(results, "log_with=tensorboard") == 0  # TINY ends with its --set
    point = results / "paper" / ONE_POINT
    scalars, images = {}, {}
    for event_file in sorted((point / "trackers").rglob("events.out.tfevents.*")):
        reader = EventAccumulator(str(event_file), size_guidance={"images": 0})
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in reader.Scalars(tag)})
        for tag in reader.Tags()["images"]:
            images.setdefault(tag, set()).update(e.step for e in reader.Images(tag))
    curve = {step: json.loads((point / "metrics" / "curve" / f"step-{step:09d}.json").read_text()) for step in (2, 4)}
    assert scalars["eval/shape_coverage"] == pytest.approx({s: c["shape_coverage"] for s, c in curve.items()})
    logged = [json.loads(line)["step"] for line in (point / "stats.jsonl").read_text().splitlines()]
    assert set(scalars["loss"]) == set(logged) and logged
    assert images["eval/samples"] == {2, 4}
