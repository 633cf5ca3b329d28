"""Keep the worker's own environment out of reach of the commands it starts.

A sandbox's environment is built from an allowlist, but a command running as the worker's user could still read
`/proc/<worker pid>/environ` — the environment the worker was started with, API keys included. Marking the worker
non-dumpable makes the kernel hand its /proc files to root only. This closes that door for a worker running as an
ordinary user with the `local` sandbox; a worker running as root needs `bubblewrap` (another uid) or `e2b`.
"""

import ctypes
import ctypes.util

PR_SET_DUMPABLE = 4


def protect_worker_environment() -> bool:
    """Make this process non-dumpable (idempotent); False where the platform offers no prctl."""
    path = ctypes.util.find_library("c")
    if not path:
        return False
    libc = ctypes.CDLL(path, use_errno=True)
    result: int = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # restype is the default, c_int: an int
    return result == 0
