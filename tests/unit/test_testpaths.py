"""Telling test paths from source paths, and splitting real `git diff --binary -M` patches by them."""

import os
import subprocess
from pathlib import Path

import pytest

from yudai_solver.base.errors import InvalidInput
from yudai_solver.solving.testpaths import (
    DEFAULT_TEST_GLOBS,
    ChangeSplit,
    PatchSection,
    is_test_path,
    sections,
    split_patch,
    validate_globs,
)

GIT_ENV = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}
BINARY_BASE = bytes(range(256)) * 4
BINARY_NEW = bytes(reversed(range(256))) * 4 + b"\0tail"


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    identity = ["-c", "user.name=x", "-c", "user.email=x@y"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=cwd, env=GIT_ENV, input=stdin, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def body(name: str, lines: int = 12) -> str:
    """Enough distinct lines that git recognises a lightly edited move as a rename."""
    return "".join(f"{name} line {n}\n" for n in range(lines))


def write(root: Path, path: str, content: str | bytes) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")


BASE_FILES: dict[str, str | bytes] = {
    "src/app.py": body("app"),
    "src/old_name.py": body("old_name"),
    "src/legacy.py": body("legacy"),
    "src/fixtures.py": body("fixtures"),
    "src/ünïcode.py": body("unicode"),
    "docs/my notes.txt": body("notes"),
    "lib/naïve old.py": body("naive"),
    "scripts/run.sh": "#!/bin/sh\necho hi\n",
    "assets/logo.bin": BINARY_BASE,
    "tests/test_existing.py": body("existing"),
    "tests/test_doomed.py": body("doomed"),
    "tests/helpers_moved.py": body("helpers"),
    "tests/test_a.py": body("test_a"),
}


def make_change(root: Path) -> None:
    """Every kind of section: modify, add, delete, rename both ways, binary, mode only, quoted paths."""
    write(root, "src/app.py", body("app").replace("app line 3\n", "app line THREE\n"))
    (root / "src/old_name.py").rename(root / "src/new_name.py")
    (root / "src/legacy.py").unlink()
    (root / "src/fixtures.py").rename(root / "tests/fixtures.py")
    write(root, "src/ünïcode.py", body("unicode") + "extra = 1\n")
    write(root, "docs/my notes.txt", body("notes") + "more\n")
    (root / "lib/naïve old.py").rename(root / "lib/naïve new.py")
    (root / "scripts/run.sh").chmod(0o755)
    write(root, "assets/logo.bin", BINARY_NEW)
    write(root, "tests/test_existing.py", body("existing") + "def test_more(): pass\n")
    (root / "tests/test_doomed.py").unlink()
    (root / "tests/helpers_moved.py").rename(root / "src/helpers.py")
    (root / "tests/unit").mkdir()
    (root / "tests/test_a.py").rename(root / "tests/unit/test_a.py")
    write(root, "tests/test_new.py", "def test_new():\n    assert True\n")
    write(root, "tests/test ñ space.py", "def test_odd_name():\n    assert True\n")
    write(root, "tests/data/fixture.bin", BINARY_NEW)


@pytest.fixture(params=["quoted", "unquoted"])
def change(request, tmp_path: Path) -> tuple[Path, str]:
    """A base repository and the patch of `make_change`, with git quoting non-ASCII paths or not."""
    root = tmp_path / "work"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "core.quotePath", "true" if request.param == "quoted" else "false")
    for path, content in BASE_FILES.items():
        write(root, path, content)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    make_change(root)
    git(root, "add", "-A")
    return root, git(root, "diff", "--cached", "--binary", "-M", "HEAD").decode("utf-8")


def fresh_checkout(repo: Path, target: Path) -> Path:
    git(repo.parent, "clone", "-q", str(repo), str(target))
    return target


def test_default_globs_recognise_common_test_layouts():
    tests = [
        "tests/a.py",
        "src/tests/deep/a.py",
        "pkg/test/Foo.java",
        "test_x.py",
        "pkg/test_x.py",
        "x_test.py",
        "cmd/x_test.go",
        "web/__tests__/a.js",
        "a.spec.ts",
        "ui/b.test.jsx",
        "spec/models/user_spec.rb",
        "conftest.py",
        "src/conftest.py",
    ]
    sources = [
        "src/main.py",
        "latest/x.py",
        "contest.py",
        "testing/x.py",
        "tests",
        "src/test.py",
        "x_test.rs",
        "pytest.ini",
        "src/spec.md",
    ]
    assert [path for path in tests if not is_test_path(path)] == []
    assert [path for path in sources if is_test_path(path)] == []


def test_user_globs_follow_gitignore_rules():
    assert is_test_path("a/b/c/check.py", ["a/**/check.py"])
    assert is_test_path("a/check.py", ["a/**/check.py"])
    assert not is_test_path("b/a/check.py", ["a/**/check.py"])  # a glob with a slash is anchored at the root
    assert is_test_path("qa/deep/x.txt", ["qa/**"])
    assert is_test_path("x/checks/y.py", ["checks/"])  # a directory glob matches at any depth
    assert not is_test_path("checks", ["checks/"])  # but only a directory
    assert is_test_path("src/checks", ["src/checks"]) and is_test_path("src/checks/z.py", ["src/checks"])
    assert not is_test_path("lib/src/checks/z.py", ["src/checks"])
    assert is_test_path("deep/down/check_1.py", ["check_[0-9].py"])
    assert not is_test_path("check_a.py", ["check_[0-9].py"])
    assert is_test_path("check_a.py", ["check_[!0-9].py"])
    assert not is_test_path("src/a.py", ["*a.py/"])  # `*` never crosses a slash
    assert not is_test_path("tests/a.py", [])  # no globs, no tests
    assert is_test_path("tests/a.py", None)


@pytest.mark.parametrize(
    "globs, message",
    [
        (["x"] * 51, "at most 50"),
        (["tests/", ""], "is empty"),
        (["   "], "is empty"),
        (["a" * 201], "longer than 200"),
        (["/tests/"], "absolute"),
        (["tests/../src"], "'..'"),
        ([".."], "'..'"),
        (["tests\0"], "NUL"),
        (["tests\n*.py"], "line break"),
        (["!tests/"], "negation"),
        ("tests/", "not a string"),
    ],
)
def test_invalid_globs_are_rejected_on_the_test_paths_field(globs, message):
    with pytest.raises(InvalidInput) as raised:
        validate_globs(globs)
    assert message in raised.value.message
    assert raised.value.field == "test_paths"


def test_valid_globs_are_returned_as_a_list():
    globs = ("a" * 200, "tests/**/*.py", "..hidden/", "x..y")
    assert validate_globs(globs) == list(globs)
    assert validate_globs(["x"] * 50) == ["x"] * 50
    assert validate_globs(DEFAULT_TEST_GLOBS) == list(DEFAULT_TEST_GLOBS)


def test_sections_name_the_paths_and_status_of_each_file(change):
    _root, patch = change
    found = {(s.old_path, s.new_path, s.status) for s in sections(patch)}
    assert found == {
        ("src/app.py", "src/app.py", "modified"),
        ("src/old_name.py", "src/new_name.py", "renamed"),
        ("src/legacy.py", None, "deleted"),
        ("src/fixtures.py", "tests/fixtures.py", "renamed"),
        ("src/ünïcode.py", "src/ünïcode.py", "modified"),
        ("docs/my notes.txt", "docs/my notes.txt", "modified"),
        ("lib/naïve old.py", "lib/naïve new.py", "renamed"),
        ("scripts/run.sh", "scripts/run.sh", "modified"),
        ("assets/logo.bin", "assets/logo.bin", "modified"),
        ("tests/test_existing.py", "tests/test_existing.py", "modified"),
        ("tests/test_doomed.py", None, "deleted"),
        ("tests/helpers_moved.py", "src/helpers.py", "renamed"),
        ("tests/test_a.py", "tests/unit/test_a.py", "renamed"),
        (None, "tests/test_new.py", "added"),
        (None, "tests/test ñ space.py", "added"),
        (None, "tests/data/fixture.bin", "added"),
    }
    assert "".join(s.text for s in sections(patch)) == patch


def test_split_patch_separates_source_changes_from_new_tests(change):
    _root, patch = change
    split = split_patch(patch)
    assert isinstance(split, ChangeSplit)
    assert sorted(split.source_files) == sorted(
        [
            "assets/logo.bin",
            "docs/my notes.txt",
            "scripts/run.sh",
            "src/app.py",
            "src/fixtures.py",
            "src/helpers.py",
            "src/legacy.py",
            "src/new_name.py",
            "src/old_name.py",
            "src/ünïcode.py",
            "lib/naïve old.py",
            "lib/naïve new.py",
        ]
    )
    assert sorted(split.tests_added) == [
        "tests/data/fixture.bin",
        "tests/fixtures.py",
        "tests/test ñ space.py",
        "tests/test_new.py",
    ]
    assert sorted(split.tests_modified) == [
        "tests/helpers_moved.py",
        "tests/test_a.py",
        "tests/test_doomed.py",
        "tests/test_existing.py",
    ]
    source_new = {s.new_path for s in sections(split.source_patch)}
    assert source_new == {
        "assets/logo.bin",
        "docs/my notes.txt",
        "scripts/run.sh",
        "src/app.py",
        "src/helpers.py",
        None,
        "src/new_name.py",
        "src/ünïcode.py",
        "lib/naïve new.py",
    }
    assert {s.new_path for s in sections(split.test_patch)} == set(split.tests_added)


def test_both_halves_apply_to_the_base_and_rebuild_the_change(change, tmp_path: Path):
    root, patch = change
    split = split_patch(patch)
    base = fresh_checkout(root, tmp_path / "fresh")
    git(base, "apply", "--check", stdin=split.source_patch.encode())
    git(base, "apply", "--check", stdin=split.test_patch.encode())
    git(base, "apply", stdin=split.source_patch.encode())
    git(base, "apply", stdin=split.test_patch.encode())
    assert (base / "assets/logo.bin").read_bytes() == BINARY_NEW
    assert (base / "tests/data/fixture.bin").read_bytes() == BINARY_NEW
    assert (base / "tests/test ñ space.py").read_text() == (root / "tests/test ñ space.py").read_text()
    assert (base / "src/ünïcode.py").read_text() == (root / "src/ünïcode.py").read_text()
    assert (base / "src/helpers.py").read_text() == body("helpers")
    assert (base / "lib/naïve new.py").read_text() == body("naive")
    assert not (base / "src/legacy.py").exists() and not (base / "src/fixtures.py").exists()
    assert os.access(base / "scripts/run.sh", os.X_OK)
    # Existing tests are left as they were at the base: their changes are in neither half.
    assert (base / "tests/test_existing.py").read_text() == body("existing")
    assert (base / "tests/test_doomed.py").exists() and (base / "tests/test_a.py").exists()


def test_the_test_half_alone_adds_only_tests(change, tmp_path: Path):
    root, patch = change
    base = fresh_checkout(root, tmp_path / "fresh")
    git(base, "apply", stdin=split_patch(patch).test_patch.encode())
    changed = git(base, "status", "--porcelain", "-uall", "-z").decode().split("\0")
    assert sorted(entry for entry in changed if entry) == sorted(
        [
            "?? tests/data/fixture.bin",
            "?? tests/test ñ space.py",
            "?? tests/test_new.py",
            "?? tests/fixtures.py",
            " D src/fixtures.py",
        ]
    )


def test_custom_globs_change_the_split(change):
    _root, patch = change
    split = split_patch(patch, globs=["docs/"])
    assert split.tests_modified == ("docs/my notes.txt",)
    assert split.tests_added == ()
    assert split.test_patch == ""
    assert "tests/test_new.py" in split.source_files
    assert "docs/my notes.txt" not in split.source_patch


def test_quoted_paths_are_unquoted():
    patch = (
        'diff --git "a/t\\303\\251st \\"q\\"\\tx.py" "b/t\\303\\251st \\"q\\"\\tx.py"\n'
        "new file mode 100644\n"
        "index 0000000..e69de29\n"
    )
    assert sections(patch) == [PatchSection(None, 'tést "q"\tx.py', "added", patch)]


def test_an_empty_patch_splits_into_nothing():
    assert split_patch("") == ChangeSplit((), (), (), "", "")
