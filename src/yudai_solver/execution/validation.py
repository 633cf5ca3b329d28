"""What an attempt changed and how to test it: test-command detection, diff statistics, output tails.

The workspace is untrusted once an agent ran in it: its `.git` (config, hooks, filters, fsmonitor) could make git
run any program on the worker. So diffs are computed with a throwaway git directory of ours that only borrows the
workspace's objects, under an environment with no global or system configuration.

Its files are untrusted even before: the repository and its setup command put there whatever they like (a link to
`/proc/kmsg`, a FIFO, a sparse file of gigabytes). So the worker itself never follows a symbolic link in it, opens
only regular files and reads them up to a cap (`read_regular`), lists a bounded number of entries, and removes the
FIFOs git would open before its git walks the tree (git opens a `.gitignore` FIFO and waits for a writer forever).
"""

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from yudai_solver.base import git
from yudai_solver.base.git import COMMIT_SHA

log = logging.getLogger(__name__)
MAX_PATCH_BYTES = 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
"""Largest marker file (pytest.ini, package.json, ...) test-command detection reads; a larger one counts as absent."""
MAX_SCANNED_ENTRIES = 50_000
"""Directory entries test-command detection looks at, at most (~0.1 s): a planted tree of millions must not stall it."""
MAX_SCAN_DEPTH = 32
MAX_WALK_DEPTH = 256
"""Directory levels `remove_fifos` descends (each level holds a file descriptor)."""
MAX_EXCLUDE_BYTES = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Files of a work tree that git opens itself while it walks the tree.
_GIT_OPENS = frozenset({".gitignore", ".gitattributes", ".gitmodules", ".mailmap"})
_PYTEST_CONFIGS = {
    "pytest.ini": "",
    "pyproject.toml": "[tool.pytest",
    "setup.cfg": "[tool:pytest]",
    "tox.ini": "[pytest]",
}
_NPM_DEFAULT_TEST = "no test specified"


@dataclass(frozen=True)
class DiffStats:
    """The changes of a workspace against its base commit, new untracked files included."""

    loc_changed: int
    """Lines inserted plus lines deleted; binary files count 0."""
    files_changed: int
    patch: str
    """`git diff --binary` from the base commit, at most MAX_PATCH_BYTES."""
    patch_truncated: bool


def detect_test_command(workspace: Path) -> str | None:
    """The repository's test command guessed from marker files, or None when nothing looks like tests.

    Looks without following links, reads regular files only and up to MAX_CONFIG_BYTES, lists MAX_SCANNED_ENTRIES
    entries at most: it takes a fraction of a second and bounded memory whatever the checkout holds.
    """
    if _has_pytest_tests(workspace):
        return f"{_python(workspace)} -m pytest -q"
    if _tree_has(workspace, "", ("test*.py",), depth=0):
        return f"{_python(workspace)} -m unittest discover"
    if _has_npm_test(workspace):
        return "npm test"
    if _is_regular(workspace, "go.mod"):
        return "go test ./..."
    if _is_regular(workspace, "Cargo.toml"):
        return "cargo test"
    return None


def diff_stats(
    workspace: Path,
    base_commit: str,
    *,
    ignore: list[str] | tuple[str, ...] = (),
    cancel: threading.Event | None = None,
) -> DiffStats:
    """Diff the working tree of `workspace` against `base_commit` (a full SHA), untracked files included.

    Files ignored by the workspace's .gitignore files or its .git/info/exclude are left out, and so are the
    `ignore` patterns (kept here, in the worker, where the agent cannot edit them); renames are detected.
    The workspace's index and its .git are not modified (FIFOs git would open aside, see `remove_fifos`).
    """
    if not COMMIT_SHA.fullmatch(base_commit):
        raise ValueError(f"base_commit must be a full commit SHA, not {base_commit!r}")
    with tempfile.TemporaryDirectory(prefix="yudai-diff-") as scratch:
        env = _scratch_repository(workspace, Path(scratch), ignore)
        _git(env, "read-tree", base_commit, cancel=cancel)
        _git(env, "add", "--all", cancel=cancel)
        numstat = _git(
            env, "diff", "--cached", "--numstat", "-M", "--no-ext-diff", "--no-textconv", base_commit, cancel=cancel
        )
        patch, truncated = _patch(env, base_commit, cancel)
    lines = [line for line in numstat.decode(errors="replace").splitlines() if line]
    return DiffStats(
        loc_changed=sum(_changed_lines(line) for line in lines),
        files_changed=len(lines),
        patch=patch,
        patch_truncated=truncated,
    )


def tail(text: str, limit: int = 2000) -> str:
    """The last `limit` characters of `text`."""
    return text[-limit:] if limit > 0 else ""


def _has_pytest_tests(workspace: Path) -> bool:
    if _tree_has(workspace, "tests", ("test_*.py", "*_test.py")) or _is_regular(workspace, "conftest.py"):
        return True
    return any(_file_mentions(workspace, name, marker) for name, marker in _PYTEST_CONFIGS.items())


def _file_mentions(workspace: Path, name: str, marker: str) -> bool:
    data = read_regular(workspace, name, MAX_CONFIG_BYTES)
    return data is not None and marker in data.decode(errors="replace")


def _python(workspace: Path) -> str:
    # Relative on purpose: the command runs in the workspace, whose absolute path differs inside some sandboxes.
    # The interpreter of a virtual environment is a link as a rule: only its name is looked at, never followed.
    return ".venv/bin/python" if _lstat_under(workspace, ".venv/bin/python") is not None else "python3"


def _has_npm_test(workspace: Path) -> bool:
    data = read_regular(workspace, "package.json", MAX_CONFIG_BYTES)
    if data is None:
        return False
    try:
        scripts = json.loads(data).get("scripts", {})
        script = scripts.get("test", "") if isinstance(scripts, dict) else ""
    except (ValueError, AttributeError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser
        return False
    # `npm init` writes a test script that only fails; it is no test suite.
    return isinstance(script, str) and bool(script) and _NPM_DEFAULT_TEST not in script


def _tree_has(root: Path, relpath: str, patterns: tuple[str, ...], *, depth: int = MAX_SCAN_DEPTH) -> bool:
    """Whether an entry under the directory `relpath` of `root` has a name matching one of `patterns`.

    No symbolic link is entered, at most MAX_SCANNED_ENTRIES entries are listed and `depth` levels descended: a
    tree too large to search counts as not having the name.
    """
    try:
        fd = _open_dir(root, _parts(relpath) if relpath else ())
    except (OSError, ValueError):
        return False
    return _dir_has(fd, patterns, [MAX_SCANNED_ENTRIES], depth)


def _dir_has(fd: int, patterns: tuple[str, ...], budget: list[int], depth: int) -> bool:
    """`_tree_has` from the open directory `fd` (closed here); `budget` is the entries left to list, shared."""
    try:
        subdirs = []
        with os.scandir(fd) as entries:
            for entry in entries:
                budget[0] -= 1
                if budget[0] < 0:
                    return False
                if any(fnmatchcase(entry.name, pattern) for pattern in patterns):
                    return True
                if depth > 0 and entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
        for name in subdirs:
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            if _dir_has(inner, patterns, budget, depth - 1):
                return True
            if budget[0] < 0:
                return False
        return False
    finally:
        os.close(fd)


def _is_regular(root: Path, relpath: str) -> bool:
    info = _lstat_under(root, relpath)
    return info is not None and stat.S_ISREG(info.st_mode)


def _lstat_under(root: Path, relpath: str) -> os.stat_result | None:
    """What `relpath` under `root` is, the last component not followed; None when it is missing or reached
    through a symbolic link."""
    try:
        parts = _parts(relpath)
        directory = _open_dir(root, parts[:-1])
    except (OSError, ValueError):
        return None
    try:
        return os.stat(parts[-1], dir_fd=directory, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(directory)


def _changed_lines(numstat_line: str) -> int:
    added, deleted, _path = numstat_line.split("\t", 2)
    return 0 if added == "-" else int(added) + int(deleted)


def _patch(env: dict[str, str], base_commit: str, cancel: threading.Event | None) -> tuple[str, bool]:
    """The binary-safe patch, read only up to MAX_PATCH_BYTES so a huge diff never fills memory."""
    head, truncated = git.head(
        "diff",
        "--cached",
        "--binary",
        "-M",
        "--no-ext-diff",
        "--no-textconv",
        base_commit,
        "--",
        limit=MAX_PATCH_BYTES,
        env=env,
        cancel=cancel,
    )
    return head.decode("utf-8", errors="replace"), truncated


def untracked_patterns(workspace: Path, base_commit: str, *, cancel: threading.Event | None = None) -> list[str]:
    """Ignore patterns for every untracked path now in `workspace` (whole directories collapsed).

    Taken right after the setup command, they keep what setup made (.venv/, node_modules/, build output) out
    of the run's diff.
    """
    with tempfile.TemporaryDirectory(prefix="yudai-untracked-") as scratch:
        env = _scratch_repository(workspace, Path(scratch))
        _git(env, "read-tree", base_commit, cancel=cancel)
        listed = _git(env, "ls-files", "-z", "--others", "--exclude-standard", "--directory", cancel=cancel)
    paths = [p for p in listed.decode(errors="surrogateescape").split("\0") if p]
    return [git.ignore_pattern(path) for path in paths]


def read_regular(root: Path, relpath: str, max_bytes: int) -> bytes | None:
    """The bytes of `relpath` under `root`; None when it is missing, not a regular file, over `max_bytes`, or
    reached through a symbolic link at any depth (each directory is opened with O_NOFOLLOW, relative to the last).

    Nothing else is ever opened: the entry is looked at first, so a device or FIFO planted there is not.
    """
    try:
        parts = _parts(relpath)
        directory = _open_dir(root, parts[:-1])
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=directory, follow_symlinks=False).st_mode):
            return None
        # O_NONBLOCK: should a FIFO take the file's place meanwhile, opening it must not wait for a writer.
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = handle.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def _parts(relpath: str) -> tuple[str, ...]:
    """The components of a relative path that stays under its root; ValueError otherwise."""
    parts = PurePosixPath(relpath).parts
    if not parts or any(part in ("..", "/", ".") for part in parts):
        raise ValueError(f"not a path inside the workspace: {relpath!r}")
    return parts


def _open_dir(root: Path, parts: Sequence[str]) -> int:
    """An fd of the directory `parts` under `root`, no component followed if it is a symbolic link."""
    directory = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            inner = os.open(part, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = inner
    except BaseException:
        os.close(directory)
        raise
    return directory


def remove_fifos(root: Path) -> int:
    """Remove the FIFOs under `root` that git would open (no link followed, MAX_WALK_DEPTH levels deep); returns
    how many.

    Git opens the `.gitignore` and `.gitattributes` files of the tree it walks with a plain blocking open: a FIFO
    of that name holds it until a writer comes, that is forever. Other FIFOs stay: git does not open them (it
    leaves an untracked one out of a change, and refuses a tracked file turned FIFO, saying so).
    """
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return 0
    return _remove_fifos_in(fd, MAX_WALK_DEPTH)


def _remove_fifos_in(fd: int, depth: int) -> int:
    removed = 0
    try:
        subdirs = []
        with os.scandir(fd) as entries:
            for entry in entries:
                # The directory entry's own type answers for nearly all: only the odd ones cost an lstat.
                if entry.is_dir(follow_symlinks=False):
                    if depth > 0:
                        subdirs.append(entry.name)
                    continue
                if entry.name not in _GIT_OPENS or entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                        os.unlink(entry.name, dir_fd=fd)
                        removed += 1
        for name in subdirs:
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            removed += _remove_fifos_in(inner, depth - 1)
    finally:
        os.close(fd)
    return removed


def remove_tree(path: Path) -> None:
    """Delete `path` and everything under it without following a symbolic link; a missing `path` is fine.

    For a run's leftovers: the sandbox may have made directories read-only (an unprivileged worker could not
    empty them) and planted links anywhere. The tree is first renamed aside, so even if some of it resists
    deletion (an immutable file, a tree deeper than Python recurses), `path` itself is free for a fresh start.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        path.unlink()
        return
    aside = path.with_name(f".{path.name}.removing-{uuid.uuid4().hex[:8]}")
    path.rename(aside)
    try:
        parent = os.open(aside.parent, _DIR_FLAGS)
        try:
            _remove_entry(parent, aside.name)
        finally:
            os.close(parent)
    except (OSError, RecursionError):
        log.warning("could not remove all of %s", aside, exc_info=True)


def _remove_entry(parent: int, name: str) -> None:
    """Remove `name` in the directory `parent`, emptying it first if it is a directory (never entering a link)."""
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    # Emptying a directory takes write and search rights on it: a read-only one is made the owner's first.
    if info.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        with contextlib.suppress(PermissionError, NotImplementedError):  # then rmdir says why
            os.chmod(name, stat.S_IMODE(info.st_mode) | stat.S_IRWXU, dir_fd=parent, follow_symlinks=False)
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for entry in os.listdir(fd):
            _remove_entry(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def restore_tests(workspace: Path, base_commit: str, *, modified: Sequence[str], added: Sequence[str]) -> None:
    """Put the base's version of the `modified` test files back and remove the `added` ones from `workspace`.

    Done by our own git (no hook, filter or configuration of the workspace runs); git neither writes nor deletes
    through a symbolic link, so a planted link cannot redirect it outside the workspace.
    """
    with tempfile.TemporaryDirectory(prefix="yudai-restore-") as scratch:
        env = _scratch_repository(workspace, Path(scratch)) | {"GIT_LITERAL_PATHSPECS": "1"}
        _git(env, "read-tree", base_commit)
        if modified:
            _git(env, "checkout", base_commit, "--", *modified, cwd=workspace)
        if added:
            _git(env, "clean", "-f", "-x", "-q", "--", *added, cwd=workspace)


def apply_patch_text(workspace: Path, patch: str) -> None:
    """Apply a patch to the files of `workspace` with our own git, refusing paths outside it or through links."""
    if not patch.strip():
        return
    with tempfile.TemporaryDirectory(prefix="yudai-apply-") as scratch:
        env = _scratch_repository(workspace, Path(scratch))
        _git(env, "apply", "--whitespace=nowarn", "-", cwd=workspace, stdin=patch.encode())


def remove_paths(workspace: Path, base_commit: str, paths: Sequence[str]) -> None:
    """Remove files the base does not have (an applied test file) from `workspace`, as `restore_tests` does."""
    restore_tests(workspace, base_commit, modified=(), added=paths)


def _scratch_repository(workspace: Path, scratch: Path, ignore: Sequence[str] = ()) -> dict[str, str]:
    """A git directory of ours that sees the workspace's objects and ignore rules; returns the env that uses it."""
    git_dir = scratch / "git"
    _git(git.isolated_env(scratch), "init", "--quiet", "--bare", str(git_dir))
    # GIT_WORK_TREE overrides the bare repository's core.bare: our git directory, the agent's files.
    env = git.isolated_env(scratch) | {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(workspace)}
    info = git_dir / "info"
    info.mkdir(exist_ok=True)
    (git_dir / "objects" / "info" / "alternates").write_text(f"{workspace / '.git' / 'objects'}\n")
    remove_fifos(workspace)
    # Ignore patterns are data, safe to take over; everything else in the workspace's .git stays unread.
    own = read_regular(workspace, ".git/info/exclude", MAX_EXCLUDE_BYTES) or b""
    (info / "exclude").write_bytes(own + "".join(f"\n{pattern}" for pattern in ignore).encode() + b"\n")
    # Our attributes win over the worktree's: a `-diff` there would count a rewritten file as 0 lines.
    (info / "attributes").write_text("* !diff\n")
    return env


def _git(
    env: dict[str, str],
    *args: str,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    cancel: threading.Event | None = None,
) -> bytes:
    return git.run(*args, env=env, cwd=cwd, stdin=stdin, cancel=cancel)
