"""Unprivileged uids for sandboxes, one per live sandbox on a host, so no two sandboxes share a process limit.

RLIMIT_NPROC counts every process of a uid: with one uid for all, a fork bomb in one run would stop every other
run from starting a process. A uid is held through an exclusive lock on a file named after it; the lock goes away
with the holder (even a killed one), so a crash never leaks a uid.
"""

import fcntl
import os
from pathlib import Path

from yudai_solver.base.errors import YudaiError


class NoFreeUid(YudaiError):
    """Every sandbox uid is in use; raise `sandbox_uid_count` or run fewer sandboxes at once."""


class UidLease:
    """One uid from `[base, base + count)`, held until `release()`."""

    uid: int
    _fd: int | None

    def __init__(self, lock_dir: Path, base: int, count: int):
        lock_dir.mkdir(parents=True, exist_ok=True)
        for uid in range(base, base + count):
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise NoFreeUid(f"all {count} sandbox uids from {base} on are in use")

    def release(self) -> None:
        """Give the uid back; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
