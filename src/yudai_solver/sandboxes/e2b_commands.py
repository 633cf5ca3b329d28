"""One command in an E2B sandbox, ended with its whole process group.

envd runs every command as `/bin/bash -l -c CMD` as the template's user, and ends the stream only when the command
has exited and every holder of its output pipe has closed it: a `server &` would keep it open until the client's
deadline, and at that deadline envd kills only the top bash (a client that disconnects kills nothing). So each
command runs under `WRAPPER`, which
- enters the working directory itself (a missing one is the command's clear failure, not an SDK error) and
  exports PATH (the login profile may have reset the `envs` PATH);
- starts the command under `timeout -s KILL`, which makes it a new process group and kills that group at the limit;
- waits for the command itself, then kills what is left of its group: the pipe closes and the stream ends. Output
  already written stays in the pipe and still reaches envd, so no drain pause is needed.
The client's own deadline (the limit plus a grace) is a backstop for what left the group (setsid): the wrapper is
then killed by pid through the SDK.
"""

import math
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import e2b

HOME_DIR = "/home/user"
GRACE_S = 30
"""The client's deadline beyond a command's limit: a backstop, never the rule."""
TIMEOUT_KILLED = 137  # `timeout -s KILL` kills the group; the wrapper reports 128 + 9
NO_CWD = 126

# Arguments: $1 working directory, $2 PATH, $3 limit in seconds, $4 the command. Never formatted with user input.
WRAPPER = f"""exec 2>&1
cd -- "$1" 2>/dev/null || {{ printf 'yudai: cannot enter the working directory %s\\n' "$1"; exit {NO_CWD}; }}
export PATH="$2"
timeout -s KILL "$3" bash -c "$4" </dev/null &
leader=$!
wait "$leader"
code=$?
kill -KILL -- "-$leader" 2>/dev/null
exit "$code"
"""


def wrapped(command: str, *, cwd: str, path: str, limit: int) -> str:
    """The text envd's bash runs: `WRAPPER` with its arguments, each quoted."""
    args = " ".join(shlex.quote(arg) for arg in (cwd, path, str(limit), command))
    return f"bash -c {shlex.quote(WRAPPER)} yudai {args}"


def run_wrapped(
    box: "e2b.Sandbox",
    command: str,
    *,
    cwd: str,
    envs: dict[str, str],
    timeout: float,
    sink: Callable[[str], None],
) -> tuple[int, bool]:
    """Run `command` under the wrapper; returns (exit code, timed out). SDK errors other than the exit code and our
    own deadline propagate (the caller translates them)."""
    from e2b import CommandExitException, TimeoutException

    limit = max(1, math.ceil(timeout))
    stream_s = limit + GRACE_S
    started = time.monotonic()
    script = wrapped(command, cwd=cwd, path=envs.get("PATH", ""), limit=limit)
    # In the background so that the pid is known: at our deadline the wrapper is killed by pid.
    handle = box.commands.run(script, background=True, envs=envs, cwd=HOME_DIR, timeout=stream_s, retain_output=False)
    try:
        handle.wait(on_stdout=sink, on_stderr=sink)
    except CommandExitException as exc:
        return exc.exit_code, exc.exit_code == TIMEOUT_KILLED and time.monotonic() - started >= limit
    except TimeoutException as exc:
        # Our deadline is a plain TimeoutException raised once `stream_s` has passed; its subclasses (sandbox not
        # running, unreachable) and an earlier one (CANCELED: the sandbox shut down) are the sandbox's failure.
        if type(exc) is not TimeoutException or time.monotonic() - started < stream_s - 0.5:
            raise
        box.commands.kill(handle.pid)
        return TIMEOUT_KILLED, True
    return 0, False
