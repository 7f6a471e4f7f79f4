"""A study compares like with like: every flag reaches its points or is refused, and a study folder
holds one launch's settings, whichever points a launch selects."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.launch import check_existing, study_points
from experiments.point import PointMismatch, point_dir
from experiments.run import main as run_main
from tests.test_bad_inputs import one_error_line, train_args
from usm.sample import main as sample_main
from usm.train import main as train_main
from usm.training.checkpoint import list_checkpoints, save_checkpoint


def write_point_json(results, point):
    directory = point_dir(results, point)
    directory.mkdir(parents=True)
    (directory / "point.json").write_text(json.dumps({k: v for k, v in point.items() if k != "name"}))


def test_an_unselected_point_of_other_settings_refuses_the_launch(tmp_path):
    """--only recipe, then --only skip_conn=False with another lr into the same folder: refused, though
    the two launches select disjoint points."""
    first = study_points("ablations", "smoke")
    write_point_json(tmp_path, next(p for p in first if p["name"] == "recipe-s0"))
    second = study_points("ablations", "smoke", sets={"train.lr": 0.05, "num_samples": 96})
    chosen = [p for p in second if p["arm"] == "skip_conn=False"]
    with pytest.raises(PointMismatch, match=r"recipe-s0, trained with other settings \(num_samples: 128 there, 96 "
                                            r"now; train.lr: 0.001 there, 0.05 now\)"):
        check_existing(str(tmp_path), chosen, second)
    check_existing(str(tmp_path), [p for p in first if p["arm"] == "skip_conn=False"], first)  # same settings


def test_more_seeds_of_the_same_settings_are_the_same_study(tmp_path):
    write_point_json(tmp_path, study_points("ablations", "smoke", seeds=[5])[0])
    points = study_points("ablations", "smoke", seeds=[0, 1])
    check_existing(str(tmp_path), points, points)


def test_a_point_of_another_scale_in_the_folder_refuses_the_launch(tmp_path):
    write_point_json(tmp_path, next(p for p in study_points("paper", "smoke") if "shapes-text" in p["arm"]))
    points = study_points("paper", "cpu")
    with pytest.raises(PointMismatch, match="an arm this launch does not have"):
        check_existing(str(tmp_path), points, points)


def test_repeated_set_flags_all_reach_the_points(capsys):
    assert run_main(["--grid", "ablations", "--set", "train.lr=0.5", "--set", "train.max_steps=3", "--dry-run"]) == 0
    points = study_points("ablations", "smoke", sets={"train.lr": 0.5, "train.max_steps": 3})
    assert {(p["settings"]["train"]["lr"], p["settings"]["train"]["max_steps"]) for p in points} == {(0.5, 3)}
    with pytest.raises(SystemExit) as stop:
        run_main(["--grid", "ablations", "--set", "train.lr=0.5", "--set", "train.lr=0.1", "--dry-run"])
    assert stop.value.code == 2
    one_error_line(capsys, "train.lr is given twice")


@pytest.mark.parametrize("argv, needle", [
    (["--grid", "paper", "--set", "train.data=/tmp"], "--set train.data: it changes what a point is"),
    (["--grid", "paper", "--set", "train.resolution=32"], "--set train.resolution"),
    (["--grid", "paper", "--set", "data.shapes_gray=/tmp"], "read no dataset of that name"),
    (["--grid", "paper", "--scale", "paper", "--set", "data.nosuch=/tmp"], "valid: afhq, celebahq, coco, coco-tokens"),
    (["--grid", "paper", "--scale", "cpu", "--set", "data.shapes-gray=/tmp"], "shapes-gray is embedded"),
    (["--grid", "ablations", "--seeds", "0", "0"], "seed 0 is given twice"),
    (["--grid", "ablations", "--seeds", "-1"], "seed -1 is negative"),
    (["--grid", "ablations", "--set", "model_args.input_size=32"], "the trainer sets input_size from the data"),
    (["--grid", "ablations", "--no-wait"], "--no-wait is for --cluster slurm"),
    (["--grid", "ablations", "--set", "model_args.init=xavier"], "init must be one of"),
    (["--grid", "paper", "--scale", "cpu", "--set", "model_args.depth=8"], "USM depth must be 6k + 1"),
])
def test_a_setting_that_would_not_reach_its_point_is_one_line(argv, needle, capsys):
    assert run_main([*argv, "--dry-run"]) == 2
    one_error_line(capsys, needle)


def test_repeated_model_args_merge_and_data_sizes_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, "--model-arg", "skip_conn=false", "--model-arg", "z_gate=false",
                                 model="USM-T/2", steps=1, data="shapes")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["identity"]["model"]["model_args"] == {"skip_conn": False, "z_gate": False}
    other = tmp_path / "other"
    assert train_main(train_args(other, "--model-arg", "input_size=32", "--resolution", "16", model="USM-T/1",
                                 data="shapes-gray")) == 2
    one_error_line(capsys, "--model-arg input_size=32: the trainer sets input_size from the data (--resolution")
    assert not other.exists() or not (other / "config.json").exists()


# --------------------------------------------------------------------------------------------------
# Finite or refused

def test_a_last_update_that_diverges_is_caught_before_it_is_saved(tmp_path, capsys):
    """The loss is checked before each update; the last update's result is checked too (exit 3)."""
    run = tmp_path / "run"
    assert train_main(train_args(run, "--lr", "1e30", steps=1)) == 3
    assert "non-finite loss or weights" in capsys.readouterr().err
    assert not list_checkpoints(run / "checkpoints")


def test_a_checkpoint_with_non_finite_weights_draws_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, steps=2)) == 0
    path = list_checkpoints(run / "checkpoints")[-1]
    state = torch.load(path, weights_only=False)
    for weights in (state["model"], state["ema"]):
        next(iter(weights.values())).fill_(float("nan"))
    save_checkpoint(run / "checkpoints", 4, state)
    out = tmp_path / "samples"
    assert sample_main([str(run), "--num", "2", "--steps", "2", "--out", str(out)]) == 2
    one_error_line(capsys, "holds non-finite weights", "the run diverged")
    assert not out.exists()  # nothing written, so the next command is not refused by a half-made folder


def test_a_non_finite_metric_is_never_averaged_into_a_row(tmp_path):
    from analysis.report.collect import collect_study
    from analysis.report.tables import summarize
    from tests.test_analysis_tables import two_dataset_study

    study = two_dataset_study(tmp_path / "paper")
    quality = study / "model=B,dataset=d1-s1" / "metrics" / "quality.json"
    quality.write_text(json.dumps({"shape_coverage": float("nan"), "precision": 0.6}))
    row = summarize(collect_study(study)).set_index("arm").loc["model=B,dataset=d1"]
    assert row["seeds"] == 2 and pd.isna(row["shape_coverage_mean"]) and row["precision_mean"] == pytest.approx(0.6)


def test_a_copy_of_a_point_folder_is_left_out_with_a_warning(tmp_path, caplog):
    import shutil

    from analysis.report.collect import collect_study, learning_curves
    from analysis.report.tables import write_tables
    from tests.test_analysis_tables import two_dataset_study

    study = two_dataset_study(tmp_path / "paper")
    shutil.copytree(study / "model=B,dataset=d1-s0", study / "model=B,dataset=d1-s0 (copy)")
    frame = collect_study(study)
    assert len(frame) == 8 and "model=B,dataset=d1-s0 (copy)" not in set(frame["run"])
    assert "a copy or a renamed folder" in caplog.text
    assert write_tables(study)["md"].exists() and learning_curves(study).empty
    results = tmp_path / "results"
    old = study_points("paper", "cpu")[0]  # a point of other settings, kept under another name
    write_point_json(results, old)
    point_dir(results, old).rename(point_dir(results, old).with_name("old run"))
    points = study_points("paper", "cpu", sets={"train.lr": 0.01})
    check_existing(str(results), points[:1], points)  # a stray folder neither counts nor blocks a launch


# --------------------------------------------------------------------------------------------------
# Inputs are what the run says it trained on

def image_folder(path, count, start=0):
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


def test_a_run_resumed_on_changed_data_is_refused(tmp_path, capsys):
    data, run = image_folder(tmp_path / "data", 8), tmp_path / "run"
    assert train_main(train_args(run, "--resolution", "16", data=data, steps=2)) == 0
    image_folder(data, 8, start=8)  # eight images added between two invocations
    assert train_main(train_args(run, "--resolution", "16", data=data, steps=4)) == 2
    one_error_line(capsys, "changed since its first steps (8 -> 16 images", "another --run-dir")
    assert json.loads((run / "config.json").read_text())["derived"]["dataset_size"] == 8  # not rewritten


def test_a_run_dir_inside_its_data_folder_is_refused(tmp_path, capsys):
    data = image_folder(tmp_path / "data", 8)
    assert train_main(train_args(data / "run", "--resolution", "16", data=data)) == 2
    one_error_line(capsys, "lies inside --data")
    assert not (data / "run").exists()


# --------------------------------------------------------------------------------------------------
# A GPU node

def test_a_local_launch_on_a_gpu_node_runs_one_point_per_gpu_each_pinned(monkeypatch):
    """Not one per CPU core (16 points sharing one GPU, each timing its img/s while sharing it)."""
    import experiments.launch as launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("USM_CPUS", "0-15")
    assert launch.default_parallel("local") == 2 and launch.default_parallel("slurm") == 1
    seen = []

    class Done:
        def done(self):
            return True

        def result(self):
            return "done"

    class Executor:
        def submit(self, job, results, point):
            seen.append((point["name"], os.environ["CUDA_VISIBLE_DEVICES"], os.environ["USM_CPUS"]))
            return Done()

    monkeypatch.setattr(launch, "_wait", lambda *a, **k: None)
    todo = [{"name": f"p{i}"} for i in range(3)]
    launch._run_pool(Executor(), None, "results", todo, 2, log=lambda *a: None)
    low, high = ",".join(map(str, range(8))), ",".join(map(str, range(8, 16)))
    assert seen == [("p0", "0", low), ("p1", "1", high), ("p2", "0", low)]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the launcher's own environment as it was
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch.default_parallel("local") == 16


def test_missing_weights_are_one_line_before_any_point_trains(tmp_path, monkeypatch, capsys):
    """The mini scale needs SD-VAE and, to score, Inception: both are checked before anything launches
    (the Inception weights were found missing only at scoring time, an hour into an arm)."""
    import analysis.metrics.fid as fid
    import usm.data.latents as latents

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    data = {f"data.{name}": str(tmp_path) for name in ("afhq", "celebahq", "coco")}
    argv = ["--grid", "paper", "--scale", "mini", "--only", "model=USM,dataset=afhq-s0", "--results",
            str(tmp_path / "results"), "--set", *[f"{k}={v}" for k, v in data.items()],
            f"data.coco-tokens={tmp_path / 'tokens.npy'}"]
    np.save(tmp_path / "tokens.npy", np.zeros((1, 2, 4), dtype=np.float32))
    assert run_main(argv) == 2
    one_error_line(capsys, "cannot load the VAE 'sd-vae-ft-ema'")
    monkeypatch.setattr(latents, "check_vae", lambda name: None)
    monkeypatch.setattr(fid, "inception_weights", lambda path=None: (_ for _ in ()).throw(
        fid.FIDWeightsMissing("FID needs the Inception-v3 weights")))
    assert run_main(argv) == 2
    one_error_line(capsys, "FID needs the Inception-v3 weights")
    assert not list((tmp_path / "results" / "paper").glob("*/config.json"))  # nothing trained


# --------------------------------------------------------------------------------------------------
# One line where a traceback was

def test_bad_context_files_and_seeds_are_one_line(tmp_path, capsys):
    (tmp_path / "garbage.npy").write_text("not an array")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 4, dtype=object))
    for extra, needle in ((["--seed", "-1"], "--seed -1: must not be negative"),
                          (["--cond", "text", "--context", str(tmp_path / "garbage.npy")], "not a numeric .npy"),
                          (["--cond", "text", "--context", str(tmp_path / "objects.npy")], "not a numeric .npy")):
        assert train_main(train_args(tmp_path / "run", *extra)) == 2
        one_error_line(capsys, needle)
        assert not (tmp_path / "run" / "config.json").exists()


def test_usm_cpus_naming_a_cpu_that_is_not_ours_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("USM_CPUS", "4096")
    assert train_main(train_args(tmp_path / "run")) == 2
    one_error_line(capsys, "USM_CPUS=4096 names CPUs this process may not use (4096)")
    monkeypatch.setenv("USM_CPUS", "a-b")
    assert train_main(train_args(tmp_path / "run")) == 2
    one_error_line(capsys, "expected a list such as")


def test_a_decompression_bomb_is_listed_like_any_unreadable_image(tmp_path, capsys, monkeypatch):
    from PIL import Image

    data = image_folder(tmp_path / "data", 8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # a bomb at PIL's real limit takes seconds to write
    Image.new("L", (100, 100)).save(data / "bomb.png")  # over twice the limit: PIL refuses to open it
    assert train_main(train_args(tmp_path / "run", "--resolution", "16", data=data)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "1 of 9 files" in err and "bomb.png: unreadable (DecompressionBombError)" in err
    assert train_main(train_args(tmp_path / "run", "--resolution", "16", "--skip-bad-images", data=data,
                                 steps=1)) == 0


def test_an_image_broken_mid_run_in_a_loader_worker_is_one_line(tmp_path, capsys):
    data = image_folder(tmp_path / "data", 8)
    whole = (data / "000.png").read_bytes()
    (data / "000.png").write_bytes(whole[: len(whole) // 2])  # its header reads, its pixels do not
    assert train_main(train_args(tmp_path / "run", "--resolution", "16", "--num-workers", "1", data=data)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "000.png cannot be read" in errors[0] and "Original Traceback" not in err


@pytest.mark.slow
def test_a_damaged_fid_weights_file_is_one_line(tmp_path, capsys):
    from analysis.__main__ import main as analysis_main

    images = image_folder(tmp_path / "images", 4)
    (tmp_path / "weights.pth").write_bytes(b"cut short")
    assert analysis_main(["fid", str(images), str(images), "--fid-weights", str(tmp_path / "weights.pth")]) == 2
    one_error_line(capsys, "is not usable as the Inception-v3 weights", "it does not load")
    official = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    official.write_bytes(b"another file")
    assert analysis_main(["fid", str(images), str(images), "--fid-weights", str(official)]) == 2
    one_error_line(capsys, "its SHA-256 does not start with 6726825d")
