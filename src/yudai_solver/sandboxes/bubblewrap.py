"""The `bubblewrap` sandbox: each command in fresh namespaces, as an unprivileged uid, under resource limits.

The worker runs as root (bubblewrap as root is no sandbox by itself): `bwrap` builds the namespaces and the
mounts, then `setpriv` drops to a uid of the sandbox's own with every capability gone and no way back
(no_new_privs), and `prlimit` caps memory, CPU time, file size and processes before `bash` starts. What a command
sees: /usr, /etc (passwd and group replaced) and the mirror's objects read-only; the workspace, its home and a /tmp
of the sandbox writable; a /proc and /dev of its own; nothing else of the host. No network unless asked, and then
outbound only, through slirp4netns, without the host's loopback, its own addresses or private ones (see `slirp`).

Process groups, timeouts, kill and capped output are LocalSandbox's: the outer `bwrap` leads the command's process
group, and killing it tears the PID namespace down with every process in it.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

from yudai_solver.base.errors import YudaiError
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import slirp
from yudai_solver.sandboxes.local import DEFAULT_MAX_OUTPUT_BYTES, LocalSandbox, LocalSandboxConfig, kill_group
from yudai_solver.sandboxes.uids import UidLease

MIB = 1024 * 1024
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_RESOLV_CONF = "/etc/resolv.conf"


class BubblewrapUnavailable(YudaiError):
    """The bubblewrap sandbox cannot run here."""


class BubblewrapConfig(LocalSandboxConfig):
    """LocalSandboxConfig plus the walls; serialized into the trajectory, so it holds no secret."""

    uid: int
    """Host uid (and gid) every command runs as."""
    network: bool = False
    """Agent and test commands get outbound network too (setup commands ask for it per command)."""
    memory_mb: int
    cpu_s: int
    file_size_mb: int
    max_processes: int
    read_only: list[str] = []
    """Host directories bound read-only at the same path: the mirror objects the checkout borrows."""


class BubblewrapSandbox(LocalSandbox):
    """A LocalSandbox whose commands run inside `bwrap`; the workspace and home become the sandbox uid's.

    Needs the `bwrap`, `setpriv` and `prlimit` programs and a worker running as root. `network` overrides the
    `sandbox_network` setting for this sandbox (a per-solve option).
    """

    config: BubblewrapConfig

    def __init__(
        self,
        *,
        workspace: Path,
        home: Path,
        env_extra: dict[str, str] | None = None,
        command_timeout: int = 120,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        settings: Settings | None = None,
        network: bool | None = None,
    ):
        _check_host()
        settings = settings or Settings.model_construct()
        super().__init__(
            workspace=workspace,
            home=home,
            env_extra=env_extra,
            command_timeout=command_timeout,
            max_output_bytes=max_output_bytes,
        )
        self._lease = UidLease(
            settings.data_dir / "sandbox-uids", settings.sandbox_uid_base, settings.sandbox_uid_count
        )
        try:
            self.config = BubblewrapConfig(
                **self.config.model_dump(),
                uid=self._lease.uid,
                network=settings.sandbox_network if network is None else network,
                memory_mb=settings.sandbox_memory_mb,
                cpu_s=settings.sandbox_cpu_s,
                file_size_mb=settings.sandbox_file_size_mb,
                max_processes=settings.sandbox_max_processes,
                read_only=borrowed_object_dirs(workspace),
            )
            self.sandbox_id = f"bwrap-{uuid.uuid4().hex[:12]}"
            self._private = home.with_name(f"{home.name}.sandbox")
            self._networks: dict[int, slirp.SlirpNetwork] = {}
            self._blocked: list[str] | None = None
            self._prepare(workspace, home)
            self._mounts = self._mount_args()
        except BaseException:
            self._lease.release()
            raise

    def close(self) -> None:
        """Kill whatever still runs and give the uid back; the files stay (the worker, as root, reads them)."""
        super().close()
        self._lease.release()

    def _prepare(self, workspace: Path, home: Path) -> None:
        (self._private / "tmp").mkdir(parents=True, exist_ok=True)
        uid, home_dir = self.config.uid, self.config.home
        (self._private / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:{home_dir}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (self._private / "group").write_text(f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n")
        (self._private / "resolv.conf").write_text(f"nameserver {slirp.SLIRP_DNS}\n")
        for tree in (workspace, home, self._private / "tmp"):
            chown_tree(tree, uid)

    def _mount_args(self) -> list[str]:
        """Everything but the per-command part, computed once: the mounts, namespaces, environment and limits."""
        args = ["bwrap", "--ro-bind", "/usr", "/usr"]
        for path in _SYSTEM_LINKS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += [
            "--ro-bind",
            "/etc",
            "/etc",
            "--ro-bind",
            str(self._private / "passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(self._private / "group"),
            "/etc/group",
        ]
        # The host's resolver may be on its loopback or a private address, both out of reach: slirp's forwarder.
        # A symbolic link (systemd-resolved's, into /run) is followed by the mount, so its target gets the file.
        resolv = os.path.realpath(_RESOLV_CONF)
        if not resolv.startswith("/etc/"):
            args += _parent_dirs([resolv])
        args += ["--ro-bind", str(self._private / "resolv.conf"), resolv]
        args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(self._private / "tmp"), "/tmp"]
        binds = [(path, "--ro-bind") for path in self.config.read_only]
        binds += [(self.config.cwd, "--bind"), (self.config.home, "--bind")]
        args += _parent_dirs(path for path, _ in binds)
        for path, kind in binds:
            args += [kind, path, path]
        args += [
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]
        for name, value in self._env.items():
            args += ["--setenv", name, value]
        # setpriv needs these three to change uid and empty the bounding set; it leaves none of them behind.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        return args

    def _argv(self, command: str, cwd: str, network: bool) -> list[str]:
        """A command with no network at all; `_launch` gives those that may have it a namespace made for them."""
        return self._bwrap_argv(command, cwd, unshare_net=True)

    def _bwrap_argv(self, command: str, cwd: str, *, unshare_net: bool) -> list[str]:
        c, uid = self.config, str(self.config.uid)
        net = ["--unshare-net"] if unshare_net else []
        drop = [
            "setpriv",
            "--reuid",
            uid,
            "--regid",
            uid,
            "--clear-groups",
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--ambient-caps",
            "-all",
            "--no-new-privs",
            "--",
        ]
        limits = [
            "prlimit",
            f"--as={c.memory_mb * MIB}",
            f"--cpu={c.cpu_s}",
            f"--fsize={c.file_size_mb * MIB}",
            f"--nproc={c.max_processes}",
            "--core=0",
            "--",
        ]
        return [*self._mounts, *net, "--chdir", cwd, "--", *drop, *limits, "bash", "-c", command]

    def _stop(self, pid: int) -> None:
        # Killing the outer bwrap tears the PID namespace down with every process in it: no reaper needed.
        kill_group(pid)

    def _launch(self, command: str, cwd: str, network: bool) -> subprocess.Popen[bytes]:
        if not (network or self.config.network):
            return self._popen(self._argv(command, cwd, network), cwd)
        if missing := slirp.missing_tools():
            raise slirp.NetworkUnavailable(
                f"network for sandboxed commands needs {', '.join(missing)} (apt-get install slirp4netns iproute2)"
            )
        netns = slirp.SlirpNetwork(blocked=self._blocked_networks(), log=self._private / "slirp.log")
        try:
            # nsenter execs bwrap in place: the process group's leader stays the outer bwrap, as without network.
            argv = ["nsenter", f"--net={netns.path}", "--", *self._bwrap_argv(command, cwd, unshare_net=False)]
            process = self._popen(argv, cwd)
        except BaseException:
            netns.close()
            raise
        self._networks[process.pid] = netns
        return process

    def _end(self, process: subprocess.Popen[bytes]) -> int:
        try:
            return super()._end(process)
        finally:
            if (network := self._networks.pop(process.pid, None)) is not None:
                network.close()

    def _blocked_networks(self) -> list[str]:
        """What a networked command must not reach, read once per sandbox (the host's addresses may change)."""
        if self._blocked is None:
            own = [f"{address}/32" for address in slirp.host_addresses()]
            self._blocked = list(dict.fromkeys([*slirp.BLOCKED_NETWORKS, *own]))
        return self._blocked


def borrowed_object_dirs(workspace: Path) -> list[str]:
    """The object directories a checkout borrows (`.git/objects/info/alternates`): the mirror it was cloned from.

    Read when the sandbox is made, before any command ran, so the agent cannot choose what gets bound.
    """
    objects = workspace / ".git" / "objects"
    alternates = objects / "info" / "alternates"
    if not alternates.is_file():
        return []
    found = []
    for line in alternates.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path = (objects / line.strip()).resolve()
            if path.is_dir():
                found.append(str(path))
    return found


def chown_tree(tree: Path, uid: int) -> None:
    """Give `tree` and everything in it to `uid`, never following a symbolic link (a repository may hold any)."""
    os.chown(tree, uid, uid, follow_symlinks=False)
    for parent, dirs, files in os.walk(tree):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def _parent_dirs(paths: Iterable[str]) -> list[str]:
    """`--dir` for every missing ancestor of the bind targets, mode 0755 (bwrap would make them 0700, root's)."""
    parents = sorted({str(p) for path in paths for p in Path(path).parents if str(p) != "/"}, key=len)
    args = []
    for parent in parents:
        args += ["--perms", "0755", "--dir", parent]
    return args


def probe() -> str | None:
    """Why the bubblewrap sandbox cannot run here, or None when a trivial command ran in its namespaces."""
    try:
        _check_host()
    except BubblewrapUnavailable as exc:
        return exc.message
    argv = ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid", "--unshare-net"]
    argv += ["--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run: {exc}"
    if done.returncode != 0:
        return f"bwrap failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    return None


def _check_host() -> None:
    missing = [name for name in ("bwrap", "setpriv", "prlimit") if shutil.which(name) is None]
    if missing:
        raise BubblewrapUnavailable(f"the bubblewrap sandbox needs {', '.join(missing)} (apt-get install bubblewrap)")
    if os.geteuid() != 0:
        raise BubblewrapUnavailable(
            "the bubblewrap sandbox needs a worker running as root: it gives each sandbox a "
            "uid of its own and drops every capability before a command starts"
        )
