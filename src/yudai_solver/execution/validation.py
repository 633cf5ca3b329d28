"""What an attempt changed and how to test it: test-command detection, diff statistics, output tails.

The workspace is untrusted once an agent ran in it: its `.git` (config, hooks, filters, fsmonitor) could make git
run any program on the worker. So diffs are computed with a throwaway git directory of ours that only borrows the
workspace's objects, under an environment with no global or system configuration.
"""

import json
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yudai_solver.base import git
from yudai_solver.base.git import COMMIT_SHA

MAX_PATCH_BYTES = 1024 * 1024
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
    """The repository's test command guessed from marker files, or None when nothing looks like tests."""
    if _has_pytest_tests(workspace):
        return f"{_python(workspace)} -m pytest -q"
    if any(workspace.glob("test*.py")):
        return f"{_python(workspace)} -m unittest discover"
    if _has_npm_test(workspace / "package.json"):
        return "npm test"
    if (workspace / "go.mod").is_file():
        return "go test ./..."
    if (workspace / "Cargo.toml").is_file():
        return "cargo test"
    return None


def diff_stats(workspace: Path, base_commit: str, *, ignore: list[str] | tuple[str, ...] = ()) -> DiffStats:
    """Diff the working tree of `workspace` against `base_commit` (a full SHA), untracked files included.

    Files ignored by the workspace's .gitignore files or its .git/info/exclude are left out, and so are the
    `ignore` patterns (kept here, in the worker, where the agent cannot edit them); renames are detected.
    The workspace itself, its index and its .git are not modified.
    """
    if not COMMIT_SHA.fullmatch(base_commit):
        raise ValueError(f"base_commit must be a full commit SHA, not {base_commit!r}")
    with tempfile.TemporaryDirectory(prefix="yudai-diff-") as scratch:
        env = _scratch_repository(workspace, Path(scratch), ignore)
        _git(env, "read-tree", base_commit)
        _git(env, "add", "--all")
        numstat = _git(env, "diff", "--cached", "--numstat", "-M", "--no-ext-diff", "--no-textconv", base_commit)
        patch, truncated = _patch(env, base_commit)
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
    tests = workspace / "tests"
    if any(tests.rglob("test_*.py")) or any(tests.rglob("*_test.py")) or (workspace / "conftest.py").is_file():
        return True
    return any(_file_mentions(workspace / name, marker) for name, marker in _PYTEST_CONFIGS.items())


def _file_mentions(path: Path, marker: str) -> bool:
    return path.is_file() and marker in path.read_text(errors="replace")


def _python(workspace: Path) -> str:
    # Relative on purpose: the command runs in the workspace, whose absolute path differs inside some sandboxes.
    return ".venv/bin/python" if (workspace / ".venv" / "bin" / "python").exists() else "python3"


def _has_npm_test(package_json: Path) -> bool:
    if not package_json.is_file():
        return False
    try:
        script = json.loads(package_json.read_text()).get("scripts", {}).get("test", "")
    except (ValueError, AttributeError):
        return False
    # `npm init` writes a test script that only fails; it is no test suite.
    return bool(script) and _NPM_DEFAULT_TEST not in script


def _changed_lines(numstat_line: str) -> int:
    added, deleted, _path = numstat_line.split("\t", 2)
    return 0 if added == "-" else int(added) + int(deleted)


def _patch(env: dict[str, str], base_commit: str) -> tuple[str, bool]:
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
    )
    return head.decode("utf-8", errors="replace"), truncated


def untracked_patterns(workspace: Path, base_commit: str) -> list[str]:
    """Ignore patterns for every untracked path now in `workspace` (whole directories collapsed).

    Taken right after the setup command, they keep what setup made (.venv/, node_modules/, build output) out
    of the run's diff.
    """
    with tempfile.TemporaryDirectory(prefix="yudai-untracked-") as scratch:
        env = _scratch_repository(workspace, Path(scratch))
        _git(env, "read-tree", base_commit)
        listed = _git(env, "ls-files", "-z", "--others", "--exclude-standard", "--directory")
    paths = [p for p in listed.decode(errors="surrogateescape").split("\0") if p]
    return [git.ignore_pattern(path) for path in paths]


def read_regular(root: Path, relpath: str, max_bytes: int) -> bytes | None:
    """The bytes of `relpath` under `root`; None when it is missing, not a regular file, over `max_bytes`, or
    reached through a symbolic link at any depth (each directory is opened with O_NOFOLLOW, relative to the last).
    """
    parts = PurePosixPath(relpath).parts
    if not parts or any(part in ("..", "/", ".") for part in parts):
        return None
    try:
        fd = _open_under(root, parts)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = handle.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def _open_under(root: Path, parts: tuple[str, ...]) -> int:
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        # O_NONBLOCK: opening a FIFO the repository planted must not block the worker.
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    finally:
        os.close(directory)


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
    # Ignore patterns are data, safe to take over; everything else in the workspace's .git stays unread.
    exclude = workspace / ".git" / "info" / "exclude"
    own = exclude.read_bytes() if exclude.is_file() and not exclude.is_symlink() else b""
    (info / "exclude").write_bytes(own + "".join(f"\n{pattern}" for pattern in ignore).encode() + b"\n")
    # Our attributes win over the worktree's: a `-diff` there would count a rewritten file as 0 lines.
    (info / "attributes").write_text("* !diff\n")
    return env


def _git(env: dict[str, str], *args: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    return git.run(*args, env=env, cwd=cwd, stdin=stdin)
