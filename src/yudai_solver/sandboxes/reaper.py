"""Runs one `local` sandbox command so that nothing it starts outlives it: `python -I -S reaper.py PROGRAM ARGS...`.

Killing the command's process group misses whatever left the group (`setsid`, a daemon's double fork): such a
process is re-parented to init and lives on after the run. A process cannot leave its ancestry, though, so this one
marks itself a child subreaper: every orphan below it is re-parented here instead of to init. When the command ends
(after `DRAIN_S` for its background children to finish on their own), when the worker asks (SIGTERM) or when the
worker dies (the parent-death signal is SIGTERM too), it SIGKILLs its children until it has none left, then exits
with the command's status.

What it cannot stop: a command that kills this process first, or that asks a service outside its ancestry to start
something (cron, at, `systemd-run`). `local` is no wall against a hostile command; `bubblewrap` is.

It runs as a script of its own with the standard library only: importing the package would cost every command a
large part of a second.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DRAIN_S = 0.25
"""How long background children may still run (and write) once the command itself has exited."""
GIVE_UP_S = 10.0
"""How long to keep killing: a child of another uid (a setuid program) cannot be killed and must not hang us."""
_WAKE = {signal.SIGCHLD, signal.SIGTERM}


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: reaper.py PROGRAM [ARGS...]")
    # Blocked before anything else: a SIGTERM arriving early is then handled like a later one, never fatal here.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE)
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    status: int | None = None
    if os.getppid() == parent:  # else the worker died before the death signal was armed: run nothing
        command = os.fork()
        if command == 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            try:
                os.execvp(argv[0], argv)
            except OSError as exc:
                os.write(2, f"reaper.py: cannot run {argv[0]}: {exc}\n".encode())
            os._exit(127)
        status = _wait_for(command)
        if status is not None:
            _drain()
    _kill_descendants()
    _exit_like(status)


def _wait_for(command: int) -> int | None:
    """The command's wait status, or None if SIGTERM came first."""
    while True:
        if signal.sigwaitinfo(_WAKE).si_signo == signal.SIGTERM:
            return None
        status = _reap(command)
        if status is not None:
            return status


def _drain() -> None:
    """Give background children `DRAIN_S` to end by themselves (a SIGTERM cuts it short)."""
    deadline = time.monotonic() + DRAIN_S
    while _has_children() and (left := deadline - time.monotonic()) > 0:
        woke = signal.sigtimedwait(_WAKE, left)
        if woke is not None and woke.si_signo == signal.SIGTERM:
            return
        _reap(None)


def _kill_descendants() -> None:
    """SIGKILL the children, whose orphans then become children here, until there are none.

    Only direct children are signalled: they are not reaped yet, so their pids cannot have been reused by an
    unrelated process between reading /proc and the kill.
    """
    deadline = time.monotonic() + GIVE_UP_S
    while _has_children() and time.monotonic() < deadline:
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        signal.sigtimedwait({signal.SIGCHLD}, 0.02)
        _reap(None)


def _reap(command: int | None) -> int | None:
    """Reap every exited child; the wait status of `command` if it was among them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == command:
            found = status


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def _exit_like(status: int | None) -> None:
    """Exit as the command did: its exit code, or death by its signal (so the caller's returncode matches)."""
    if status is None:
        os._exit(128 + signal.SIGKILL)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
