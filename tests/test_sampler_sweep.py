"""The sampler sweep draws what a study point draws, for every solver, and says what is wrong with a request."""

import json
import re

import numpy as np
import pytest

from analysis.report.sampler_sweep import main
from usm.sample import main as sample_main
from usm.train import main as train_main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    assert train_main(["--model", "USM-T/1", "--data", "shapes-gray", "--resolution", "16", "--run-dir",
                       str(root / "run"), "--max-steps", "4", "--batch-size", "4", "--ckpt-every", "2",
                       "--model-arg", "expand=1", "d_state=4"]) == 0
    return root / "run"


def test_rows_are_the_samplers_images_scored_from_the_same_noise(run, tmp_path, monkeypatch):
    import analysis.report.sampler_sweep as sweep

    drawn = {}
    original = sweep.draw

    def keep(model, shape, num, method, steps, seed, batch):
        images, seconds = original(model, shape, num, method, steps, seed, batch=3)  # batches must not matter
        drawn[method, steps] = images
        return images, seconds

    monkeypatch.setattr(sweep, "draw", keep)
    out = tmp_path / "sweep.md"
    assert main([str(run), "--checkpoints", "2", "4", "--solvers", "euler:2", "heun:1", "--num", "8",
                 "--out", str(out)]) == 0
    assert sample_main([str(run), "--num", "8", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    # the step-4 checkpoint is the newest, the one usm.sample draws from: the same images
    assert np.array_equal(drawn["euler", 2], np.load(tmp_path / "s" / "samples.npz")["images"])
    record = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["step"], r["solver"], r["steps"]): r for r in record["rows"]}
    assert set(rows) == {(2, "euler", 2), (2, "heun", 1), (4, "euler", 2), (4, "heun", 1)}
    assert rows[4, "heun", 1]["evaluations"] == 2 and rows[4, "euler", 2]["evaluations"] == 2
    assert {"shape_coverage", "shape_density", "precision", "precision_sampling_std"} <= rows[4, "heun", 1].keys()
    assert 0 <= rows[4, "euler", 2]["shape_coverage"] <= 1
    assert out.read_text().startswith("| checkpoint step | solver |")
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").exists()


@pytest.mark.parametrize("argv, message", [
    (["--solvers", "rk4:3"], "--solvers rk4:3: write SOLVER:STEPS, SOLVER one of euler, heun"),
    (["--solvers", "heun:0"], "--solvers heun:0"),
    (["--checkpoints", "3"], "--checkpoints 3: .* holds steps 2, 4"),
    (["--num", "2"], "--num 2: the k-NN metrics need at least 4"),
])
def test_a_bad_request_is_one_line_naming_it(run, capsys, argv, message):
    assert main([str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_a_folder_without_checkpoints_says_to_train_it(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "holds no checkpoints" in capsys.readouterr().err


def test_a_damaged_newest_checkpoint_is_skipped_as_the_sampler_skips_it(run, tmp_path, capsys):
    import shutil

    from usm.training.checkpoint import list_checkpoints

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    assert main([str(copy), "--num", "4", "--solvers", "euler:2"]) == 0
    assert "| 2 | euler | 2 |" in capsys.readouterr().out  # the step-2 checkpoint, the newest that verifies
    assert main([str(copy), "--num", "4", "--solvers", "euler:2", "--checkpoints", "4"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error:") and "does not match its checksum" in err
