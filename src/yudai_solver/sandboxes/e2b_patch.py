"""The repository into an E2B sandbox (a tar of a clean clone) and the agent's change back out (a patch, as bytes).

The patch is written to a file inside the sandbox and read with the SDK's `format="bytes"`: command output is
decoded by the SDK with `errors="replace"`, which would turn a Latin-1 line into U+FFFD and break `git apply`, and
it carries stderr, whose warnings would land inside a hunk.
"""

import re
import shlex
import tarfile
import tempfile
from pathlib import Path

from yudai_solver.base import git
from yudai_solver.sandboxes.e2b_client import E2BError

_SIZE = re.compile(r"^yudai-patch-bytes=(\d+)$", re.MULTILINE)


def pack_repository(workspace: Path, scratch: Path) -> Path:
    """A tar holding `repo/`: a depth-1 clone of the checkout's HEAD, with no remote and no borrowed objects."""
    clone = scratch / "repo"
    for args in (
        ["clone", "--quiet", "--depth", "1", "--no-tags", f"file://{workspace}", str(clone)],
        ["-C", str(clone), "remote", "remove", "origin"],
        ["-C", str(clone), "config", "user.name", git.USER_NAME],
        ["-C", str(clone), "config", "user.email", git.USER_EMAIL],
    ):
        try:
            git.run(*args, env=git.trusted_env())
        except git.GitError as exc:
            raise E2BError(f"packing the repository failed: {exc.message}") from None
    archive = scratch / "repo.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(clone, arcname="repo")
    return archive


def export_script(base_commit: str, target: str, excluded: list[str]) -> str:
    """The script that writes `git diff --binary base_commit` (new files included, `excluded` paths left out) to
    `target` and then prints its size on a line of its own, last."""
    exclude = ""
    if excluded:
        patterns = "\n".join(git.ignore_pattern(path) for path in excluded)
        exclude = f"printf '%s\\n' {shlex.quote(patterns)} >> .git/info/exclude && "
    # Explicit prefixes, no colour, no external drivers: the sandbox's git configuration is the agent's.
    return (
        f"{exclude}git add --all && git -c core.quotepath=off diff --cached --binary --no-color --no-ext-diff "
        f"--no-textconv --src-prefix=a/ --dst-prefix=b/ {base_commit} > {target} && "
        f"printf 'yudai-patch-bytes=%s\\n' \"$(wc -c < {target})\""
    )


def exported_size(output: str) -> int | None:
    """The size `export_script` printed: the last such line (what git printed before cannot come after it)."""
    sizes = _SIZE.findall(output)
    return int(sizes[-1]) if sizes else None


def apply_patch(workspace: Path, patch: bytes) -> None:
    """`git apply` the patch, as bytes, in `workspace` with no system or global configuration; E2BError with git's
    message. git apply refuses paths outside the tree, inside `.git` and through symbolic links."""
    with tempfile.TemporaryDirectory(prefix="yudai-apply-") as scratch:
        try:
            git.run(
                "apply",
                "--binary",
                "--whitespace=nowarn",
                "-",
                cwd=workspace,
                env=git.isolated_env(scratch),
                stdin=patch,
            )
        except git.GitError as exc:
            raise E2BError(f"applying the sandbox's patch failed: {exc.message}") from None
