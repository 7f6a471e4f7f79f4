"""The one lock (``usm/locks.py``) and the one writability check (``usm.files.check_writable``)."""

from __future__ import annotations

import errno
import os

import pytest

import usm.locks
from usm.files import WriteError, check_writable
from usm.locks import held, is_held, try_lock


def test_a_held_lock_refuses_a_second_taker_and_frees_on_close(tmp_path):
    path = tmp_path / "lock"
    first = try_lock(path, RuntimeError("busy"))
    with pytest.raises(RuntimeError, match="busy"):
        try_lock(path, RuntimeError("busy"))  # another open file: what a second process sees
    assert is_held(path)
    first.close()
    assert not is_held(path) and not is_held(tmp_path / "never-made")
    with held(path):
        assert is_held(path)


def test_a_filesystem_without_flock_goes_on_with_one_warning(tmp_path, monkeypatch, caplog):
    def no_flock(handle, flags):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(usm.locks.fcntl, "flock", no_flock)
    handle = try_lock(tmp_path / "lock", RuntimeError("busy"))
    handle.close()
    assert "does not support flock" in caplog.text
    assert not is_held(tmp_path / "lock")

    def broken(handle, flags):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(usm.locks.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output"):
        try_lock(tmp_path / "lock", RuntimeError("busy"))


def test_check_writable_names_the_folder_the_flag_and_the_fix(tmp_path):
    check_writable(tmp_path / "new" / "deeper", "--results", "the results")  # a folder to be made: fine
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == []  # nothing left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"file is not a folder: --results must name a folder"):
        check_writable(tmp_path / "file" / "study", "--results", "the results")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(WriteError, match="cannot write in .*locked .*choose another --run-dir"):
            check_writable(locked / "run", "--run-dir", "the run's files")
