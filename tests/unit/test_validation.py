"""Test-command detection, diff statistics against the base commit, and tails."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from yudai_solver.execution.validation import MAX_PATCH_BYTES, DiffStats, detect_test_command, diff_stats, tail

GIT_ENV = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=Tester", "-c", "user.email=tester@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def lines(count: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {n}\n" for n in range(count))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A workspace at its base commit: a 10-line file, a 4-line file and a .gitignore for *.log."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "kept.txt").write_text(lines(10))
    (path / "doomed.txt").write_text(lines(4, "doomed"))
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return path


def base(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def test_diff_counts_modified_new_and_deleted_files(repo: Path):
    sha = base(repo)
    text = (repo / "kept.txt").read_text().replace("line 3\n", "LINE 3\n").replace("line 7\n", "LINE 7\n")
    (repo / "kept.txt").write_text(text + "appended\n")  # 3 insertions, 2 deletions
    (repo / "brand_new.py").write_text("a = 1\nb = 2\nc = 3\n")  # 3 insertions, untracked
    (repo / "doomed.txt").unlink()  # 4 deletions
    (repo / "debug.log").write_text("ignored by .gitignore\n")

    stats = diff_stats(repo, sha)

    assert (stats.loc_changed, stats.files_changed, stats.patch_truncated) == (12, 3, False)
    assert "+appended" in stats.patch and "+c = 3" in stats.patch and "-doomed 3" in stats.patch
    assert "debug.log" not in stats.patch


def test_diff_includes_changes_the_agent_committed(repo: Path):
    sha = base(repo)
    (repo / "kept.txt").write_text(lines(11))
    git(repo, "commit", "-qam", "agent commit")

    assert diff_stats(repo, sha).loc_changed == 1


def test_no_change_is_an_empty_diff(repo: Path):
    assert diff_stats(repo, base(repo)) == DiffStats(loc_changed=0, files_changed=0, patch="", patch_truncated=False)


def test_binary_files_count_as_files_with_zero_lines(repo: Path):
    sha = base(repo)
    (repo / "image.bin").write_bytes(bytes(range(256)) * 4)

    stats = diff_stats(repo, sha)

    assert (stats.loc_changed, stats.files_changed) == (0, 1)
    assert "GIT binary patch" in stats.patch


def test_diff_leaves_the_workspace_index_alone(repo: Path):
    sha = base(repo)
    (repo / "brand_new.py").write_text("x = 1\n")
    (repo / "kept.txt").write_text("changed\n")
    before = git(repo, "status", "--porcelain")

    diff_stats(repo, sha)

    assert git(repo, "status", "--porcelain") == before == " M kept.txt\n?? brand_new.py".strip()


def test_workspace_git_config_runs_nothing_on_the_worker(repo: Path, tmp_path: Path):
    sha = base(repo)
    pwned = tmp_path / "pwned"
    git(repo, "config", "core.fsmonitor", f"touch {pwned}.fsmonitor; false")
    git(repo, "config", "filter.evil.clean", f"touch {pwned}.filter; cat")
    git(repo, "config", "diff.evil.textconv", f"touch {pwned}.textconv; cat")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (repo / "kept.txt").write_text(lines(12))

    stats = diff_stats(repo, sha)

    assert list(tmp_path.glob("pwned*")) == []
    assert (stats.loc_changed, stats.files_changed) == (3, 2)  # 2 lines in kept.txt, 1 in .gitattributes


def test_attributes_cannot_hide_changed_lines(repo: Path):
    sha = base(repo)
    (repo / ".gitattributes").write_text("* -diff\n")
    (repo / "kept.txt").write_text(lines(10, "rewritten"))

    assert diff_stats(repo, sha).loc_changed == 1 + 20


def test_info_exclude_of_the_workspace_is_honoured(repo: Path):
    sha = base(repo)
    (repo / ".git" / "info" / "exclude").write_text(".venv/\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")

    assert diff_stats(repo, sha).files_changed == 0


def test_patch_is_capped_and_flagged(repo: Path):
    sha = base(repo)
    (repo / "big.txt").write_text(lines(100_000, "a fairly long line of generated text"))

    stats = diff_stats(repo, sha)

    assert stats.patch_truncated
    assert len(stats.patch.encode()) <= MAX_PATCH_BYTES
    assert (stats.loc_changed, stats.files_changed) == (100_000, 1)


def test_base_commit_must_be_a_sha(repo: Path):
    with pytest.raises(ValueError, match="full commit SHA"):
        diff_stats(repo, "--output=/tmp/x")


@pytest.mark.parametrize(
    ("markers", "expected"),
    [
        ({"tests/test_app.py": ""}, "python3 -m pytest -q"),
        ({"tests/unit/test_deep.py": ""}, "python3 -m pytest -q"),
        ({"pytest.ini": "[pytest]\n"}, "python3 -m pytest -q"),
        ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, "python3 -m pytest -q"),
        ({"setup.cfg": "[tool:pytest]\n"}, "python3 -m pytest -q"),
        ({"tests/test_app.py": "", ".venv/bin/python": ""}, ".venv/bin/python -m pytest -q"),
        ({"test_app.py": ""}, "python3 -m unittest discover"),
        ({"package.json": json.dumps({"scripts": {"test": "jest"}})}, "npm test"),
        ({"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})}, None),
        ({"package.json": json.dumps({"name": "no-scripts"})}, None),
        ({"go.mod": "module example.com/x\n"}, "go test ./..."),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, "cargo test"),
        ({"pyproject.toml": "[project]\nname = 'x'\n", "README.md": "hi"}, None),
        ({}, None),
    ],
)
def test_detect_test_command(tmp_path: Path, markers: dict[str, str], expected: str | None):
    for name, text in markers.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert detect_test_command(tmp_path) == expected


def test_tail_keeps_the_last_characters():
    assert tail("abcdef", 3) == "def"
    assert tail("ab", 5) == "ab"
    assert tail("x" * 5000) == "x" * 2000
    assert tail("abc", 0) == ""
