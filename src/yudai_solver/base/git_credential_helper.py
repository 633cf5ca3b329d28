"""The git credential helper of the worker's own git processes: asks the worker, over a unix socket, for the answer.

Run by path (`python -I -S THIS_FILE SOCKET get`), never imported: git starts it after a host answered 401, so it
must start fast, and it imports only the standard library's smallest modules. It knows no secret of its own; the
worker answers only a helper that descends from the git process it started for that operation (see
`yudai_solver.base.git_credentials`), and only for that operation's host.

`store` and `erase` are no-ops: the worker keeps nothing git tells it, and git is told nothing to keep.
"""

import socket
import sys

_LIMIT = 64 * 1024
_TIMEOUT_S = 10.0


def main(argv: list[str]) -> int:
    request = sys.stdin.buffer.read(_LIMIT)
    if len(argv) != 3 or argv[2] != "get":
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(_TIMEOUT_S)
        try:
            connection.connect(argv[1])
            connection.sendall(request)
            connection.shutdown(socket.SHUT_WR)
            answer = bytearray()
            while len(answer) < _LIMIT and (chunk := connection.recv(_LIMIT)):
                answer += chunk
        except OSError:
            return 0  # no answer: git then fails with its own "authentication failed" (it may not prompt)
    sys.stdout.buffer.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
