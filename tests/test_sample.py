"""Sampling CLI: deterministic per image, resumable, class labels, EMA by default, clear errors."""

import numpy as np
import pytest

from usm.sample import main as sample_main
from usm.train import main as train_main
from usm.training.checkpoint import list_checkpoints


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    from usm.data.shapes import export_folder

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USM_BENCH_CACHE", str(root / "cache"))
        data = export_folder(root / "img", count=16)
    assert train_main(["--model", "DiT-T/2", "--data", str(data), "--cond", "class", "--run-dir", str(root / "run"),
                       "--max-steps", "3", "--batch-size", "4", "--ckpt-every", "3", "--ema-decay", "0.5"]) == 0
    return root / "run"


def images(folder):
    return np.load(folder / "samples.npz")


def test_deterministic_batch_independent_and_resumable(run, tmp_path):
    assert sample_main([str(run), "--num", "6", "--steps", "3", "--out", str(tmp_path / "a"), "--batch-size", "4"]) == 0
    assert sample_main([str(run), "--num", "6", "--steps", "3", "--out", str(tmp_path / "b"), "--batch-size", "6"]) == 0
    a, b = images(tmp_path / "a"), images(tmp_path / "b")
    assert a["images"].shape == (6, 32, 32, 3) and np.array_equal(a["images"], b["images"])
    assert a["labels"].tolist() == [0, 1, 2, 3, 0, 1]
    (tmp_path / "a" / "000002.png").unlink()
    marker = (tmp_path / "a" / "000004.png").stat().st_mtime_ns
    assert sample_main([str(run), "--num", "6", "--steps", "3", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "000004.png").stat().st_mtime_ns == marker  # kept, not redrawn
    assert np.array_equal(images(tmp_path / "a")["images"], b["images"])


def test_seed_label_ema_and_checkpoint_path(run, tmp_path):
    base = ["--num", "2", "--steps", "2"]
    sample_main([str(run), *base, "--out", str(tmp_path / "s0")])
    sample_main([str(run), *base, "--seed", "1", "--out", str(tmp_path / "s1")])
    sample_main([str(run), *base, "--no-ema", "--out", str(tmp_path / "raw")])
    sample_main([str(list_checkpoints(run / "checkpoints")[-1]), *base, "--label", "3", "--out", str(tmp_path / "l3")])
    s0 = images(tmp_path / "s0")["images"]
    assert not np.array_equal(s0, images(tmp_path / "s1")["images"])
    assert not np.array_equal(s0, images(tmp_path / "raw")["images"])
    assert images(tmp_path / "l3")["labels"].tolist() == [3, 3]


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    assert sample_main([str(tmp_path / "nope"), "--num", "1"]) == 2
    assert "neither a run directory nor a checkpoint" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert sample_main([str(tmp_path / "empty"), "--num", "1"]) == 2
    assert "no verified checkpoint" in capsys.readouterr().err
