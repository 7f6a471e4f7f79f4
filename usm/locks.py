"""The one file lock every writer uses: a trainer's run, a study's point, a latent cache.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "lock"
    >>> handle = try_lock(path, RuntimeError("busy"))
    >>> is_held(path)
    True
    >>> handle.close(); is_held(path)
    False

An exclusive ``flock`` on a file beside what it guards, released when the handle closes or its
process dies (a killed writer leaves no stale lock). Where the filesystem has no ``flock`` (some NFS
mounts), the work goes on unlocked with one warning: a second writer would then not be detected.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)


def _lock(handle: IO, path: Path, flags: int) -> None:
    try:
        fcntl.flock(handle, flags)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in NO_FLOCK:
            raise
        log.warning("the filesystem of %s does not support flock (%s): a second writer would not be detected",
                    path.parent, exc.strerror)


def try_lock(path: Path, busy: Exception) -> IO:
    """Open ``path`` and take its lock without waiting: the open handle (close it to release), or
    ``busy`` raised when another process holds it."""
    handle = open(path, "a")
    try:
        _lock(handle, path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise busy from None
    except BaseException:
        handle.close()
        raise
    return handle


@contextlib.contextmanager
def held(path: Path):
    """Wait for ``path``'s lock and hold it for the block (a cache one process builds while others wait)."""
    with open(path, "a") as handle:
        _lock(handle, path, fcntl.LOCK_EX)
        yield handle


def is_held(path: Path) -> bool:
    """Whether another process holds ``path``'s lock now (False where there is no file or no flock)."""
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno in NO_FLOCK:
                return False
            raise
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
