"""Fault injection at every file a train-then-sample run writes and reads back.

For each write site: a full disk (one clean error line, no partial file left, nothing written before
it lost) and a kill in the middle of the write (only a dead writer's temporary file, or a torn last
log line, is left). For each file read back: a truncated copy (one line naming it, or recovered
with a warning). In every case the same two commands then finish, and their samples are exactly
those of a run that met no fault: nothing was lost and nothing was mixed in.

The sites are found, not listed by hand: ``written_names`` records every file a clean run flushes
to disk, and ``test_every_write_site_is_covered`` fails when a new one appears that SITES lacks.
"""

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import usm.files
import usm.training.run_dir
from tests.tiny_study import ONE_POINT, run_one_point
from usm.files import TEMP, temp_path
from usm.sample import main as sample_main
from usm.train import main as train_main

# a name every written file of that kind contains; the error line must name it
SITES = ("shapes-", "config.json", "stats.jsonl", "step_000000002.pt", "step_000000002.pt.sha256", "step_000000004.pt",
         "provenance.json", "000002.png", "samples.npz")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("USM_BENCH_CACHE", str(tmp_path / "cache"))


def run_both(root: Path) -> tuple[int, int | None]:
    """Train DiT-T/2 for 4 steps (checkpoints at 2 and 4), then draw 4 samples; (train, sample) exit codes."""
    run = root / "run"
    trained = train_main(["--model", "DiT-T/2", "--data", "shapes", "--run-dir", str(run), "--max-steps", "4",
                          "--batch-size", "4", "--ckpt-every", "2", "--log-every", "1"])
    if trained:
        return trained, None
    return trained, sample_main([str(run), "--num", "4", "--steps", "1", "--out", str(root / "samples")])


def samples(root: Path) -> np.ndarray:
    return np.load(root / "samples" / "samples.npz")["images"]


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP.match(p.name)]


def flushed_by(run, root: Path) -> list[str]:
    """Call ``run(root)`` (with its own cache) and return the name of every file it flushed to disk."""
    names, real = [], os.fsync
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USM_BENCH_CACHE", str(root / "cache"))
        mp.setattr(usm.files.os, "fsync", lambda fd: names.append(_name(fd)) or real(fd))
        assert run(root) in ((0, 0), 0)
    return names


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The samples of a run that met no fault, and the names of every file it flushed to disk."""
    root = tmp_path_factory.mktemp("clean")
    names = flushed_by(run_both, root)
    return samples(root), names


def _name(fd: int) -> str:
    """The file name behind a descriptor, with a writer's temporary name turned back into its target's."""
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    match = re.match(r"^\.(.+)\.tmp\..+\.\d+$", name)
    return match.group(1) if match else name


def test_every_write_site_is_covered(reference):
    """Each kind of file (digits aside: every PNG is one kind) a clean run flushes is one of SITES."""
    def kind(name):
        return re.sub(r"\d", "#", name)

    files, sites = {kind(n) for n in reference[1] if "." in n}, {kind(s) for s in SITES}
    assert files and all(any(site in n for site in sites) for n in files), sorted(files)
    assert all(any(site in n for n in files) for site in sites), "a site no run writes any more"


@contextlib.contextmanager
def full_disk_at(hit):
    """Within the block, the disk fills up when a file whose name ``hit`` accepts is flushed."""
    real = os.fsync

    def full(fd):
        if hit(_name(fd)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(usm.files.os, "fsync", full)
        yield


@contextlib.contextmanager
def killed_at(hit):
    """Within the block, the writer of a file whose name ``hit`` accepts dies after its bytes reached
    its temporary file and before the rename: the temporary file stays, under a dead process's name."""
    real = os.replace

    def killed(src, dst):
        dst = Path(dst)
        if hit(dst.name) and Path(src) == temp_path(dst):
            os.rename(src, dst.with_name(f".{dst.name}.tmp.{usm.files.HOST}.{dead_pid()}"))
            raise Killed
        real(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(usm.files.os, "replace", killed)
        yield


@pytest.mark.parametrize("site", SITES)
@pytest.mark.slow
def test_a_full_disk_at_each_write_site(site, reference, tmp_path, capsys):
    with full_disk_at(lambda name: site in name):
        assert 2 in run_both(tmp_path)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]
    assert len(errors) == 1 and site in errors[0] and "No space left on device" in errors[0], err
    assert "free space" in errors[0]
    assert not temps(tmp_path)  # the partial copy was removed
    assert run_both(tmp_path) == (0, 0)
    assert np.array_equal(samples(tmp_path), reference[0])


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, no cleanup runs in the writer."""


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("site", SITES)
@pytest.mark.slow
def test_a_kill_at_each_write_site(site, reference, tmp_path):
    """The writer dies after its bytes reached its temporary file and before the rename (an append:
    halfway through the line). The next start removes the dead writer's file and finishes the work."""
    real_append = usm.training.run_dir.append_line

    def killed_append(path, line):
        if site in Path(path).name:
            with open(path, "a") as f:
                f.write(line[: len(line) // 2])
            raise Killed
        real_append(path, line)

    with killed_at(lambda name: site in name), pytest.MonkeyPatch.context() as mp:
        mp.setattr(usm.training.run_dir, "append_line", killed_append)
        with pytest.raises(Killed):
            run_both(tmp_path)
    assert run_both(tmp_path) == (0, 0)
    assert not temps(tmp_path)
    assert np.array_equal(samples(tmp_path), reference[0])


# A truncated copy of each file a finished run reads back -> None when the next run recovers by itself
# (with a warning), else what its one error line tells the user to remove before rerunning.
READ_SITES = {
    "run/config.json": "run/config.json",
    "run/stats.jsonl": None,
    "run/checkpoints/step_000000004.pt": None,  # set aside, trained again from step 2: the same weights
    "run/checkpoints/step_000000004.pt.sha256": None,
    "samples/000002.png": None,
    "samples/provenance.json": "samples",
    "samples/samples.npz": None,
}


@pytest.mark.parametrize("site", READ_SITES)
@pytest.mark.slow
def test_a_truncated_file_at_each_read_site(site, reference, tmp_path, capsys):
    assert run_both(tmp_path) == (0, 0)
    path = tmp_path / site
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
    capsys.readouterr()
    codes = run_both(tmp_path)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if READ_SITES[site]:
        errors = [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")]
        assert 2 in codes and len(errors) == 1 and path.name in errors[0], err
        remove = tmp_path / READ_SITES[site]
        shutil.rmtree(remove) if remove.is_dir() else remove.unlink()
        assert run_both(tmp_path) == (0, 0)
    else:
        assert codes == (0, 0), err
    assert np.array_equal(samples(tmp_path), reference[0])


# --------------------------------------------------------------------------------------------------
# The study layer: a point's own files (point.json, the learning curve, the sampling time, the
# metrics, done) and the study's table, written by the launcher around the trainer and the sampler.

STUDY_SITES = ("point.json", "step-000000002.json", "timing.json", "quality.json", "done", "table.md")
QUALITY = ("shape_coverage", "shape_density", "precision", "recall")


def run_study(root: Path) -> int:
    return run_one_point(root / "results")


def point_quality(root: Path) -> dict:
    record = json.loads((root / "results" / "paper" / ONE_POINT / "metrics" / "quality.json").read_text())
    return {k: record[k] for k in QUALITY}


@pytest.fixture(scope="module")
def study_reference(tmp_path_factory):
    """A clean study point's quality, and the names of every file the study flushed to disk."""
    root = tmp_path_factory.mktemp("clean-study")
    names = flushed_by(run_study, root)
    return point_quality(root), names


@pytest.mark.slow
def test_every_study_site_is_written_by_a_study(study_reference):
    assert all(any(site == n for n in study_reference[1]) for site in STUDY_SITES), sorted(set(study_reference[1]))


@pytest.mark.slow
@pytest.mark.parametrize("site", STUDY_SITES)
def test_a_full_disk_at_each_study_write_site(site, study_reference, tmp_path, capsys, no_debugger):
    with full_disk_at(lambda name: name == site):
        assert run_study(tmp_path) != 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "No space left on device" in out.out + out.err, out
    assert not temps(tmp_path)
    assert run_study(tmp_path) == 0
    assert point_quality(tmp_path) == study_reference[0]


@pytest.mark.slow
@pytest.mark.parametrize("site", STUDY_SITES)
def test_a_kill_at_each_study_write_site(site, study_reference, tmp_path, no_debugger):
    with killed_at(lambda name: name == site), pytest.raises(Killed):
        run_study(tmp_path)
    assert run_study(tmp_path) == 0
    assert point_quality(tmp_path) == study_reference[0]
    assert not temps(tmp_path / "results")
