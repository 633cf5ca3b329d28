"""Outbound network for one bubblewrap command, without the host: `slirp4netns` behind a network namespace.

The command runs in a network namespace of its own; slirp4netns (root, but in a mount namespace of its own with
every capability dropped: `--enable-sandbox`) gives it a tap0 interface and carries its connections out through the
host's sockets, as the host. What it must then not reach:

- the host's loopback (PostgreSQL, the API, ...): `--disable-host-loopback` refuses 10.0.2.2, the alias slirp gives
  it; 127.0.0.1 inside the namespace is the namespace's own;
- private, shared (CGNAT) and link-local addresses (the LAN, a cloud's metadata service at 169.254.169.254) and every
  address of the host's own interfaces (services bound to 0.0.0.0): `unreachable` routes in the namespace, put there
  from outside before the command starts. The command runs without CAP_NET_ADMIN, so it cannot take them away.

slirp's own network (10.0.2.0/24: the gateway and the DNS forwarder at 10.0.2.3) stays reachable through its more
specific route. IPv6 stays off (slirp4netns without `--enable-ipv6`): the namespace has no IPv6 route at all.
"""

import ipaddress
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from yudai_solver.base.errors import YudaiError

SLIRP_DNS = "10.0.2.3"
"""Where a command's resolver must point: slirp forwards it to the host's."""
BLOCKED_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)
"""RFC 1918 private, RFC 6598 shared (CGNAT) and link-local IPv4 networks."""
READY_TIMEOUT_S = 10.0
TOOLS = ("slirp4netns", "unshare", "nsenter", "ip")


class NetworkUnavailable(YudaiError):
    """A command asked for the network and it could not be given without the host's."""


def missing_tools() -> list[str]:
    """The programs a networked command needs that are not installed."""
    return [name for name in TOOLS if shutil.which(name) is None]


def host_addresses() -> list[str]:
    """Every IPv4 address of the host's interfaces but loopback ones (slirp would connect to them as the host)."""
    done = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise NetworkUnavailable(f"ip addr failed: {done.stderr.strip()[-300:]}")
    found = []
    for interface in json.loads(done.stdout or "[]"):
        for address in interface.get("addr_info", []):
            local = address.get("local")
            if local and not ipaddress.ip_address(local).is_loopback:
                found.append(local)
    return found


class SlirpNetwork:
    """A network namespace with outbound network only, for one command; `path` is where to `nsenter --net=` it.

    The namespace is made and wired before the command starts (a holder process keeps it: `sleep` in it): slirp4netns
    configures tap0, then `ip` brings lo up and adds the `unreachable` routes. Configuring it while bwrap sets up
    the loopback of a namespace of its own races (bwrap then fails with "Failed RTM_NEWADDR"), hence the holder.
    Ends with `close()`, or when this process dies (the holder's parent-death signal, slirp's exit fd).
    """

    def __init__(self, *, blocked: list[str], log: Path):
        self._holder = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.path = f"/proc/{self._holder.pid}/ns/net"
        self._exit_w = -1
        self._slirp: subprocess.Popen[bytes] | None = None
        try:
            self._wait_unshared()
            self._start_slirp(log)
            self._block(blocked)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop slirp4netns and the holder (idempotent); the namespace goes with the last process in it."""
        if self._exit_w >= 0:
            os.close(self._exit_w)
            self._exit_w = -1
        if self._slirp is not None:
            _stop(self._slirp, timeout=5)
        self._holder.kill()
        self._holder.wait()

    def _wait_unshared(self) -> None:
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self._holder.poll() is None:
            try:
                if os.readlink(self.path) != own:
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.001)
        raise NetworkUnavailable("unshare --net did not make a network namespace")

    def _start_slirp(self, log: Path) -> None:
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        try:
            with log.open("ab") as sink:
                self._slirp = subprocess.Popen(
                    [
                        "slirp4netns",
                        "--configure",
                        "--mtu=65520",
                        "--disable-host-loopback",
                        "--enable-sandbox",
                        "--enable-seccomp",
                        f"--ready-fd={ready_w}",
                        f"--exit-fd={exit_r}",
                        str(self._holder.pid),
                        "tap0",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=sink,
                    pass_fds=(ready_w, exit_r),
                )
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            if select.select([ready_r], [], [], READY_TIMEOUT_S)[0] and os.read(ready_r, 1) == b"1":
                return
        finally:
            os.close(ready_r)
        tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
        raise NetworkUnavailable(f"slirp4netns did not bring the network up: {tail}")

    def _block(self, blocked: list[str]) -> None:
        batch = "link set lo up\n" + "".join(f"route add unreachable {network}\n" for network in blocked)
        done = subprocess.run(
            ["nsenter", f"--net={self.path}", "--", "ip", "-batch", "-"],
            input=batch,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            raise NetworkUnavailable(f"could not cut private addresses off: {done.stderr.strip()[-300:]}")


def _stop(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
