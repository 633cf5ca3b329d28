"""Small waiting and probing helpers shared by the test tiers."""

import os
import socket
import time
from collections.abc import Callable


def wait_for(predicate, timeout: float = 30, interval: float = 0.05):
    """The first truthy value of `predicate()`, polled until `timeout` seconds; AssertionError after that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_where(matches: Callable[[bytes], bool]) -> set[int]:
    """Live processes whose NUL-separated command line `matches`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if matches(cmdline):
            found.add(int(entry))
    return found
