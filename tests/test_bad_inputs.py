"""Bad inputs and faults against every command: one clear line (exit code 2), nothing lost, nothing mixed.

One test per defect found by trying the commands as a new user would (docs/bad_inputs.md lists them
all with what each now gives)."""

import errno
import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from analysis.__main__ import main as analysis_main
from usm.files import HOST
from usm.sample import main as sample_main
from usm.train import main as train_main
from usm.training.checkpoint import list_checkpoints
from usm.training.run_dir import RunDir


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def train_args(run_dir, *extra, model="DiT-T/2", steps=4, data="shapes"):
    return ["--model", model, "--data", str(data), "--run-dir", str(run_dir), "--max-steps", str(steps),
            "--batch-size", "4", "--ckpt-every", "2", "--log-every", "1", *extra]


def one_error_line(capsys, *needles):
    """stderr holds exactly one error line (progress bars aside), no traceback, and every needle."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in re.split(r"[\r\n]", err) if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error:"), err
    for needle in needles:
        assert needle in errors[0], err
    return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USM_BENCH_CACHE", str(root / "cache"))
        assert train_main(train_args(root / "run", steps=2)) == 0
    return root / "run"


# --------------------------------------------------------------------------------------------------
# Silent wrong results

def test_samples_of_other_settings_never_mix(trained, tmp_path, capsys):
    out = tmp_path / "s"
    assert sample_main([str(trained), "--num", "4", "--steps", "1", "--out", str(out)]) == 0
    assert sample_main([str(trained), "--num", "8", "--steps", "2", "--out", str(out)]) == 2
    one_error_line(capsys, "other settings", "steps: 1 there, 2 asked")
    assert len(list(out.glob("*.png"))) == 4  # nothing added, nothing removed
    record = json.loads((out / "provenance.json").read_text())
    assert record["steps"] == 1 and record["weights"] == "ema" and record["step"] == 2
    assert sample_main([str(trained), "--num", "8", "--steps", "1", "--out", str(out)]) == 0  # same settings: resumes
    assert "8 samples (4 new)" in capsys.readouterr().out


def test_samples_are_keyed_by_the_weights_they_come_from(trained, tmp_path, capsys):
    """Other weights (the digest differs) are refused; a folder of an earlier version, which has no
    digest, is compared by the checkpoint's checksum instead, and reused."""
    out = tmp_path / "s"
    assert sample_main([str(trained), "--num", "2", "--steps", "1", "--out", str(out)]) == 0
    stamp = out / "provenance.json"
    record = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    assert sample_main([str(trained), "--num", "2", "--steps", "1", "--out", str(out)]) == 2
    one_error_line(capsys, "other settings", "weights_sha256")
    stamp.write_text(json.dumps({k: v for k, v in record.items() if k != "weights_sha256"}))
    assert sample_main([str(trained), "--num", "3", "--steps", "1", "--out", str(out)]) == 0
    assert "3 samples (1 new)" in capsys.readouterr().out


def test_default_sample_folders_name_their_settings(trained, capsys):
    assert sample_main([str(trained), "--num", "2", "--steps", "1"]) == 0
    assert sample_main([str(trained), "--num", "2", "--steps", "2", "--no-ema"]) == 0
    names = sorted(p.name for p in (trained / "samples").iterdir())
    assert names == ["step_000000002-euler1-cfg1-ema-s0", "step_000000002-euler2-cfg1-raw-s0"]


def test_foreign_pngs_are_refused_and_other_files_ignored(trained, tmp_path, capsys):
    out = tmp_path / "foreign"
    out.mkdir()
    Image.new("RGB", (32, 32)).save(out / "000000.png")
    assert sample_main([str(trained), "--num", "2", "--steps", "1", "--out", str(out)]) == 2
    one_error_line(capsys, "without provenance.json")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("mine")
    assert sample_main([str(trained), "--num", "2", "--steps", "1", "--out", str(other)]) == 0
    assert "ignoring 1 file" in capsys.readouterr().err and (other / "README.txt").exists()


def test_a_checkpoint_of_another_run_is_neither_resumed_nor_sampled(tmp_path, capsys):
    """A checkpoint copied in from a run with other settings was resumed (its lr in stats.jsonl, this
    run's in config.json) and sampled without a word; now both refuse it, naming the differences."""
    other, run = tmp_path / "other", tmp_path / "run"
    assert train_main(train_args(other, "--lr", "5e-4", "--seed", "7", steps=4)) == 0
    assert train_main(train_args(run, steps=2)) == 0
    for name in ("step_000000004.pt", "step_000000004.pt.sha256"):
        (run / "checkpoints" / name).write_bytes((other / "checkpoints" / name).read_bytes())
    before = (run / "stats.jsonl").read_text()
    assert train_main(train_args(run, steps=6)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "step_000000004.pt was written by a different run" in err, err
    assert "train.lr: 0.0005 in the checkpoint, 0.0001 requested" in err and "train.seed: 7 in the checkpoint" in err
    assert (run / "stats.jsonl").read_text() == before
    assert sample_main([str(run), "--num", "2", "--steps", "1"]) == 2
    one_error_line(capsys, "was written by a different run")
    for name in ("step_000000004.pt", "step_000000004.pt.sha256"):
        (run / "checkpoints" / name).unlink()
    assert train_main(train_args(run, steps=4)) == 0  # its own newest checkpoint: resumes from step 2
    assert [r["step"] for r in RunDir(run).read_stats()] == [1, 2, 3, 4]


def test_model_args_are_typed_and_checked_before_anything_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, "--model-arg", "skip_conn=flase", model="USM-T/2", steps=1)) == 2
    one_error_line(capsys, "skip_conn='flase' is not a bool")
    assert train_main(train_args(run, "--model-arg", "nosuch=1", "--dry-run")) == 2
    one_error_line(capsys, "no constructor argument 'nosuch'", "valid:")
    assert train_main(train_args(run, "--model-arg", "depth=2.5")) == 2
    one_error_line(capsys, "depth=2.5 is not an integer")
    assert not run.exists()


# --------------------------------------------------------------------------------------------------
# Lost work or data

def test_unverifiable_checkpoints_are_kept_and_never_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, steps=4)) == 0
    intact = {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")}
    for sidecar in (run / "checkpoints").glob("*.sha256"):
        sidecar.write_text("0" * 64)  # no checkpoint verifies any more
    assert train_main(train_args(run, steps=6)) == 2
    one_error_line(capsys, "none verifies", "--from-scratch")
    assert {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")} == intact
    assert train_main(train_args(run, "--from-scratch", steps=6)) == 0
    kept = {p.name: p.read_bytes() for p in (run / "checkpoints" / "unverified").glob("*.pt")}
    assert kept == intact  # moved aside byte for byte
    steps = [r["step"] for r in RunDir(run).read_stats()]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4, 5, 6]  # no duplicated steps from the first start


def test_a_broken_sample_png_is_drawn_again(trained, tmp_path, capsys):
    """A 0-byte PNG (a kill or a full disk during an older version's write) made every rerun fail on
    PIL's UnidentifiedImageError; a reused sample is now decoded, and one that does not decode is redrawn."""
    out = tmp_path / "s"
    assert sample_main([str(trained), "--num", "4", "--steps", "1", "--out", str(out)]) == 0
    pixels = np.asarray(Image.open(out / "000002.png"))
    (out / "000002.png").write_bytes(b"")
    (out / "000003.png").write_bytes((out / "000003.png").read_bytes()[:40])  # cut after the header
    assert sample_main([str(trained), "--num", "4", "--steps", "1", "--out", str(out)]) == 0
    assert "4 samples (2 new)" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(out / "000002.png")), pixels)  # the same sample, drawn again
    assert np.load(out / "samples.npz")["images"].shape[0] == 4


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_temp_files_of_a_killed_writer_are_removed_at_the_next_start(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, steps=2)) == 0
    stale = [run / "checkpoints" / f".step_000000004.pt.tmp.{HOST}.{dead_pid()}",
             run / f".config.json.tmp.{HOST}.{dead_pid()}"]
    live = run / "checkpoints" / f".step_000000099.pt.tmp.{HOST}.{os.getpid()}"  # a writer still running
    for path in [*stale, live]:
        path.write_bytes(b"partial")
    assert train_main(train_args(run, steps=4)) == 0
    assert not any(p.exists() for p in stale) and live.exists()


def test_a_full_disk_is_one_line_and_the_next_run_resumes(tmp_path, capsys, monkeypatch):
    """ENOSPC while a checkpoint is written: one line naming the file, no partial file left, the
    checkpoints before it intact, and the same command resumes once there is space."""
    import usm.files

    run = tmp_path / "run"
    assert train_main(train_args(run, steps=2)) == 0
    real_fsync = os.fsync

    def full(fd):  # the disk fills up when the checkpoint is written
        if "step_" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(usm.files.os, "fsync", full)
    assert train_main(train_args(run, steps=4)) == 2
    one_error_line(capsys, "cannot write", "step_000000004.pt", "No space left on device", "free space")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000000002.pt",
                                                                       "step_000000002.pt.sha256"]
    monkeypatch.setattr(usm.files.os, "fsync", real_fsync)
    assert train_main(train_args(run, steps=4)) == 0
    assert "resumed from" in (run / "log.txt").read_text()


def test_results_that_name_a_file_are_one_line(tmp_path, capsys):
    from experiments.run import main as run_main

    (tmp_path / "afile").write_text("")
    assert run_main(["--grid", "ablations", "--results", str(tmp_path / "afile")]) == 2
    one_error_line(capsys, "is not a folder", "--results")


def test_a_read_only_results_folder_is_one_line_before_anything_launches(tmp_path, capsys, monkeypatch):
    """As root every folder is writable; for anyone else a read-only --results is found before the
    first point, not by its first write (simulated: the check's probe file cannot be made there)."""
    import usm.files
    from experiments.run import main as run_main

    folder = tmp_path / "readonly"
    folder.mkdir()
    real = usm.files.tempfile.TemporaryFile

    def probe(*args, dir=None, **kwargs):
        if str(dir) == str(folder):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(usm.files.tempfile, "TemporaryFile", probe)
    assert run_main(["--grid", "ablations", "--results", str(folder)]) == 2
    one_error_line(capsys, "cannot write in", str(folder), "fix its permissions")
    assert list(folder.iterdir()) == []


def test_a_damaged_config_json_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, steps=2)) == 0
    (run / "config.json").write_text((run / "config.json").read_text()[:50])  # cut short
    assert train_main(train_args(run, steps=4)) == 2
    one_error_line(capsys, "config.json is damaged (not JSON", "delete it and rerun")
    assert sample_main([str(run), "--num", "2", "--steps", "1"]) == 2
    one_error_line(capsys, "config.json is damaged")


def test_a_second_trainer_on_one_run_dir_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(train_args(run, steps=2)) == 0
    before = (run / "stats.jsonl").read_text()
    with RunDir(run).locked():
        assert train_main(train_args(run, steps=4)) == 2
    one_error_line(capsys, "in use by another trainer")
    assert (run / "stats.jsonl").read_text() == before


def write_images(folder, count=8, size=40):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_an_image_broken_mid_run_is_named_and_the_steps_are_kept(tmp_path, capsys, monkeypatch):
    data = tmp_path / "img"
    write_images(data)
    broken = data / "003.png"
    original = broken.read_bytes()
    import usm.data.datasets as datasets

    opened = datasets.scan_folder
    monkeypatch.setattr(datasets, "scan_folder",  # the file breaks after the start-up check
                        lambda *a, **k: (opened(*a, **k), broken.write_bytes(original[:60]))[0])
    run = tmp_path / "run"
    assert train_main(train_args(run, "--ckpt-every", "100", data=data, steps=8)) == 2
    one_error_line(capsys, "003.png cannot be read", "--skip-bad-images")
    saved = list_checkpoints(run / "checkpoints")
    assert saved, "the steps trained before the bad image were lost"
    broken.write_bytes(original)
    run2 = tmp_path / "run2"
    assert train_main(train_args(run2, "--skip-bad-images", data=data, steps=8)) == 0
    assert "skipping unreadable image" in capsys.readouterr().err


def test_an_unwritable_run_dir_is_found_before_the_first_step(tmp_path, capsys, monkeypatch):
    import usm.files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(usm.files.tempfile, "TemporaryFile", refuse)  # (root ignores chmod, so fake the refusal)
    assert train_main(train_args(tmp_path / "run")) == 2
    one_error_line(capsys, "cannot write in", "Permission denied")
    assert not (tmp_path / "run" / "stats.jsonl").exists()


def test_a_failed_validation_writes_no_config(tmp_path, capsys):
    data, run = tmp_path / "img", tmp_path / "run"
    write_images(data)
    # 24 px in patches of 2 is a 12 x 12 grid, which USM's three 2x downsamplings cannot divide
    assert train_main(train_args(run, "--resolution", "24", model="USM-T/2", data=data, steps=1)) == 2
    one_error_line(capsys, "cannot be built", "divisible by 8")
    assert not (run / "config.json").exists()
    assert train_main(train_args(run, "--batch-size", "0", data=data)) == 2
    one_error_line(capsys, "--batch-size 0")
    assert train_main(train_args(run, "--resolution", "32", model="USM-T/2", data=data, steps=1)) == 0


# --------------------------------------------------------------------------------------------------
# One-line errors instead of tracebacks

@pytest.mark.parametrize("extra, needle", [
    (["--ckpt-every", "0"], "--ckpt-every 0"),
    (["--lr", "nan"], "--lr nan"),
    (["--latent", "/missing/dir"], "--latent /missing/dir"),
    (["--ema-decay", "1.5"], "--ema-decay 1.5"),
    (["--context", "/missing.npy", "--cond", "text"], "--context /missing.npy"),
    (["--model-arg", "oops"], "expected KEY=VALUE"),
])
def test_bad_trainer_flags_are_one_line(tmp_path, capsys, extra, needle):
    try:
        code = train_main(train_args(tmp_path / "run", *extra))
    except SystemExit as stop:  # malformed KEY=VALUE ends in the parser, as argparse's own errors do
        code = stop.code
    assert code == 2
    one_error_line(capsys, needle)
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--num", "0"], "--num 0"),
    (["--num", "2", "--steps", "0"], "--steps 0"),
    (["--num", "2", "--label", "1"], "not class-conditional"),
    (["--num", "2", "--cfg-scale", "3"], "guidance needs a conditional run"),
    (["--num", "2", "--device", "gpu"], "--device gpu: not a device name"),
    pytest.param(["--num", "2", "--device", "cuda"], "no CUDA GPU is visible here",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible")),
])
def test_bad_sampler_flags_are_one_line(trained, tmp_path, capsys, extra, needle):
    assert sample_main([str(trained), *extra, "--out", str(tmp_path / "s")]) == 2
    one_error_line(capsys, needle)
    assert not (tmp_path / "s").exists()


def test_a_label_outside_the_classes_is_refused(tmp_path, capsys):
    from usm.data.shapes import export_folder

    data = export_folder(tmp_path / "img", count=8)
    assert train_main(train_args(tmp_path / "run", "--cond", "class", data=data, steps=1)) == 0
    assert sample_main([str(tmp_path / "run"), "--num", "2", "--label", "7"]) == 2
    one_error_line(capsys, "--label 7", "4 classes")


@pytest.mark.parametrize("argv, needle", [
    (["table", "--study", "nosuch"], "does not exist"),
    (["flops", "--model", "USM-T/2", "--image-size", "250"], "multiple of 8"),
    (["flops", "--model", "USM-T/2", "--model-arg", "skip_conn=maybe"], "not a bool"),
])
def test_analysis_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert analysis_main(argv) == 2
    one_error_line(capsys, needle)


def test_fid_without_weights_is_one_line(tmp_path, capsys, monkeypatch):
    for name in ("a", "b"):
        write_images(tmp_path / name, count=2)
    monkeypatch.setenv("USM_FID_WEIGHTS", str(tmp_path / "absent.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert analysis_main(["fid", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    one_error_line(capsys, "absent.pth")
