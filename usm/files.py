"""Files that are either whole or absent: a reader never sees half of one, whatever kills the writer.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "record.json"
    >>> atomic_write(path, '{"step": 80}')
    >>> path.read_text()
    '{"step": 80}'

Every file the harness writes goes through ``atomic_write`` (or ``atomic_save`` for a serialiser that
wants a file object): the bytes go to a temporary name of the writer's own
(``.NAME.tmp.HOST.PID``), are flushed to disk, and are renamed over the target. A writer killed on
the way leaves only its temporary file, which ``remove_dead_temps`` deletes at the next start once
its process is gone. An append-only log goes through ``append_line`` instead. A write that fails
(disk full, a read-only folder) removes its temporary file and raises ``WriteError``, one line
naming the file, the cause, and that the old file is unchanged.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import socket
import tempfile
from pathlib import Path

HOST = socket.gethostname().replace("/", "_")
TEMP = re.compile(r"^\..+\.tmp\.(?P<host>.+)\.(?P<pid>\d+)$")


def cache_dir() -> Path:
    """Where derived data is cached (rendered shapes, metric calibrations, classifiers, FID statistics):
    ``$USM_BENCH_CACHE``, else ``~/.cache/usm-bench``."""
    return Path(os.environ.get("USM_BENCH_CACHE", Path.home() / ".cache" / "usm-bench"))


def safe_name(text: str) -> str:
    """``text`` as a file name: every character outside [A-Za-z0-9=.,_+-] becomes '_'."""
    return re.sub(r"[^A-Za-z0-9=.,_+-]", "_", text)


def point_name(arm: str, seed: int) -> str:
    """The folder of a study point (``results/<study>/<name>``): its arm and seed."""
    return f"{safe_name(arm)}-s{seed}"


class WriteError(OSError):
    """A file could not be written; the message names it and says what was kept."""


def check_writable(folder: Path, flag: str, what: str, error: type[OSError] = WriteError) -> None:
    """Raise ``error`` now, before any work, if ``folder`` (or the nearest folder above it that exists)
    cannot be written: one line naming the folder, the flag that chose it and the fix. Writes nothing
    that stays (a temporary file, removed)."""
    existing = Path(folder)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{existing} is not a folder: {flag} must name a folder ({what} go to {folder})")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise error(f"cannot write in {existing} ({exc.strerror}): {what} go to {folder}; fix its permissions "
                    f"or choose another {flag}") from None


class DamagedFile(ValueError):
    """A file the harness wrote does not read back; the message names it and the way out."""


def read_json(path: str | Path, fix: str):
    """The JSON in ``path``; DamagedFile (naming the file and ``fix``) if it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFile(f"{path} is damaged (not JSON: {exc}); it was cut short or edited: {fix}") from None


def read_cache(path: str | Path):
    """The JSON of a cache file, or None when it is absent or damaged (with a warning): the caller
    computes it again."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read_json(path, "")
    except DamagedFile:
        logging.getLogger("usm.files").warning("computing %s again: it is damaged", path)
        return None


def temp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under by this process (unique per host and process)."""
    return path.with_name(f".{path.name}.tmp.{HOST}.{os.getpid()}")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` under ``temp_path``, flush it to disk, then rename it over ``path`` and flush the
    folder. On failure the temporary file is removed and ``WriteError`` raised."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        error = WriteError(write_failure(path, exc))
        error.errno = exc.errno
        raise error from None


def atomic_save(path: str | Path, save, *args, **kwargs) -> None:
    """``save(buffer, *args, **kwargs)`` into memory (np.savez, torch.save, PIL's save), then
    ``atomic_write`` the bytes."""
    buffer = io.BytesIO()
    save(buffer, *args, **kwargs)
    atomic_write(path, buffer.getvalue())


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` and flush it to disk (an append-only log: a kill may
    tear its last line, which its reader leaves out). A failure raises ``WriteError``."""
    path = Path(path)
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        cause = exc.strerror or str(exc)
        error = WriteError(f"cannot append to {path} ({cause}): free space there (or make it writable) and "
                           "rerun; the lines before are kept, and a torn last line is left out when it is read")
        error.errno = exc.errno
        raise error from None


def write_failure(path: Path, exc: OSError) -> str:
    """One line: which file, why, and that nothing was replaced."""
    cause = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free space there", errno.EDQUOT: "free space (quota) there",
           errno.EACCES: "make it writable", errno.EROFS: "it is read-only: choose another folder"}
    return (f"cannot write {path} ({cause}): {fix.get(exc.errno, 'fix the folder')} and rerun; "
            f"{'the previous ' + path.name + ' is unchanged' if path.exists() else 'nothing was written'}, "
            "and the partial copy was removed")


def remove_dead_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files in ``folder`` left by writers of this host that are no longer
    running (a kill, a crash); the names deleted."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMP.match(entry.name)
        if match and match["host"] == HOST and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
