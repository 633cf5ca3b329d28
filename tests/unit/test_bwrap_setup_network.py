"""The network a bubblewrap command gets when it may have one (setup commands; agent commands with `network`):
outbound through slirp4netns, never the host. Real sandboxed commands against real listening sockets: the host's
loopback (PostgreSQL on 127.0.0.1:5432 included), slirp's alias for it, the host's own addresses, private and
link-local ones.
"""

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from yudai_solver.base.settings import Settings
from yudai_solver.entry.demo import create_repository
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import BubblewrapSandbox, create_sandbox
from yudai_solver.sandboxes.slirp import host_addresses, missing_tools

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0 or bool(missing_tools()),
    reason="needs bubblewrap, slirp4netns, iproute2 and a root worker",
)

# Prints one line per target: "HOST:PORT open", or "HOST:PORT ERRNO-NAME" (refused, unreachable, timed out).
CONNECT = """python3 - "$@" <<'EOF'
import errno, socket, sys
for target in sys.argv[1:]:
    host, port, device = (target.split(":") + [""])[:3]
    s = socket.socket()
    s.settimeout(2)
    try:
        if device:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        s.connect((host, int(port)))
        print(target, "open")
    except socket.timeout:
        print(target, "ETIMEDOUT")
    except OSError as exc:
        print(target, errno.errorcode.get(exc.errno, exc.errno))
EOF"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[BubblewrapSandbox]:
    settings = Settings(data_dir=tmp_path / "data")
    repo = create_repository(tmp_path / "repos" / "calc")
    workspace = settings.data_dir / "runs" / "r1" / "work"
    WorkspaceCache(settings.data_dir / "mirrors").checkout(str(repo), "main", workspace)
    sandbox = create_sandbox("bubblewrap", workspace=workspace, home=workspace.parent / "home", settings=settings)
    assert isinstance(sandbox, BubblewrapSandbox)
    yield sandbox
    sandbox.close()


@contextmanager
def listening(host: str = "0.0.0.0") -> Iterator[int]:
    """A socket listening on the host (all interfaces by default), the way PostgreSQL or the API would."""
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen()
        yield server.getsockname()[1]


def connect(box: BubblewrapSandbox, *targets: str, network: bool = True) -> dict[str, str]:
    command = f"set -- {' '.join(targets)}\n{CONNECT}"
    done = box.run(command, timeout=60, network=network)
    results = dict(line.split(" ", 1) for line in done.output.splitlines() if " " in line)
    assert set(results) == set(targets), done.output
    return results


def reachable_from_host(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 2).close()
    except OSError:
        return False
    return True


def test_a_setup_command_cannot_reach_the_hosts_loopback_services(box: BubblewrapSandbox):
    assert reachable_from_host("127.0.0.1", 5432), "PostgreSQL should listen on the host's 127.0.0.1:5432"
    with listening("127.0.0.1") as port:
        assert reachable_from_host("127.0.0.1", port)
        results = connect(box, "127.0.0.1:5432", f"127.0.0.1:{port}", "10.0.2.2:5432", f"10.0.2.2:{port}")

    # 127.0.0.1 is the sandbox's own loopback; 10.0.2.2, slirp's alias for the host's, is refused by slirp.
    assert results == {
        "127.0.0.1:5432": "ECONNREFUSED",
        f"127.0.0.1:{port}": "ECONNREFUSED",
        "10.0.2.2:5432": "ENETUNREACH",
        f"10.0.2.2:{port}": "ENETUNREACH",
    }


def test_a_setup_command_cannot_reach_the_hosts_own_addresses(box: BubblewrapSandbox):
    addresses = host_addresses()
    if not addresses:
        pytest.skip("the host has no address but loopback")
    with listening() as port:
        assert all(reachable_from_host(address, port) for address in addresses)
        targets = [f"{address}:{port}" for address in addresses]
        bound = [f"{address}:{port}:tap0" for address in addresses]  # SO_BINDTODEVICE skips the route lookup
        results = connect(box, *targets, *bound)

    assert all(results[t] == "EHOSTUNREACH" for t in targets), results
    assert not any(results[t] == "open" for t in bound), results


def test_private_and_link_local_addresses_are_unreachable(box: BubblewrapSandbox):
    targets = ["10.1.2.3:80", "172.16.0.1:80", "192.168.1.1:80", "100.64.0.1:80", "169.254.169.254:80"]
    started = time.monotonic()

    results = connect(box, *targets)

    assert results == dict.fromkeys(targets, "EHOSTUNREACH")
    assert time.monotonic() - started < 10  # refused by the routes at once, not timed out one by one


def test_the_setup_command_has_an_interface_and_slirps_resolver(box: BubblewrapSandbox):
    done = box.run(
        "grep -o tap0 /proc/net/dev; cat /etc/resolv.conf; ip -4 route show default", timeout=30, network=True
    )

    assert done.returncode == 0, done.output
    assert done.output.splitlines()[:2] == ["tap0", "nameserver 10.0.2.3"]
    assert "default via 10.0.2.2 dev tap0" in done.output


def test_without_network_there_is_no_interface_at_all(box: BubblewrapSandbox):
    done = box.run("grep -c tap0 /proc/net/dev", timeout=30, network=False)

    assert done.output.strip() == "0"
    assert connect(box, "1.1.1.1:80", network=False) == {"1.1.1.1:80": "ENETUNREACH"}


def test_outbound_connections_work_where_the_host_has_them(box: BubblewrapSandbox):
    if not reachable_from_host("deb.debian.org", 80):
        pytest.skip("this host reaches no public server")
    done = box.run(
        'python3 -c \'import socket; socket.create_connection(("deb.debian.org", 80), 5); print("open")\'',
        timeout=30,
        network=True,
    )

    assert done.output == "open\n"


def test_slirp_and_the_namespace_holder_end_with_the_command(box: BubblewrapSandbox):
    box.run("true", timeout=30, network=True)

    assert children_named("slirp4netns", "sleep") == []


def children_named(*names: str) -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        if int(fields[1]) == me and comm in names and fields[0] != "Z":
            found.append(int(entry))
    return found
