"""Which changed paths are test files, and a run's patch split into its source part and its new tests.

Paths are repository-relative POSIX paths. Globs are gitignore-like: `**` matches any number of directories, a
glob without `/` (a trailing one aside) matches a name at any depth, any other glob is anchored at the repository
root, a glob ending with `/` matches only a directory; everything under a matching directory matches too.
`*`, `?` and `[...]` never match `/`. Negation (`!glob`) and backslash escapes are not supported.

`split_patch` takes the text of `git diff --binary -M` (default `a/` and `b/` prefixes) and cuts it into per-file
sections, each kept character for character, so any subset of them is itself a patch `git apply` accepts. A
section goes to the side of the path it leaves behind: `source_patch` holds every section whose resulting path is
a source file (deleted source files included), `test_patch` only the sections that create a test file.
Changes to test files that exist at the base are reported in `tests_modified` and are in neither patch.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise, takewhile

from yudai_solver.base.errors import InvalidInput

DEFAULT_TEST_GLOBS: tuple[str, ...] = (
    "tests/",
    "test/",
    "__tests__/",
    "spec/",
    "test_*.py",
    "*_test.py",
    "*_test.go",
    "*.spec.*",
    "*.test.*",
    "conftest.py",
)
MAX_GLOBS = 50
MAX_GLOB_CHARS = 200

_SECTION_START = re.compile(r"^diff --git ", re.MULTILINE)
# The extended header lines of `git diff`; the first other line starts the hunks or the binary data, whose
# lines could otherwise be mistaken for header lines.
_HEADER_PREFIXES = (
    "old mode ",
    "new mode ",
    "deleted file mode ",
    "new file mode ",
    "copy from ",
    "copy to ",
    "rename from ",
    "rename to ",
    "similarity index ",
    "dissimilarity index ",
    "index ",
)
_GLOB_TOKEN = re.compile(r"\*\*/|/\*\*$|\*+|\?|\[[!^]?\]?[^]]*\]|.", re.DOTALL)
_C_ESCAPE = re.compile(rb"\\([0-7]{3}|.)", re.DOTALL)
_C_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13, b'"': 34, b"\\": 92}


@dataclass(frozen=True)
class PatchSection:
    """One file's part of a patch; `old_path` is None for an added file, `new_path` is None for a deleted one."""

    old_path: str | None
    new_path: str | None
    status: str
    """"added", "modified", "deleted" or "renamed"; a copy counts as added."""
    text: str


@dataclass(frozen=True)
class ChangeSplit:
    source_files: tuple[str, ...]
    """Source paths the patch touches, both paths of a rename included; deleted ones too."""
    tests_added: tuple[str, ...]
    tests_modified: tuple[str, ...]
    """Test paths that exist at the base and were changed, deleted, or renamed (the old path)."""
    source_patch: str
    test_patch: str
    """Only the sections creating the files in `tests_added`."""


def is_test_path(path: str, globs: Sequence[str] | None = None) -> bool:
    """Whether `path` matches one of `globs` (DEFAULT_TEST_GLOBS when None)."""
    return _compiled(tuple(DEFAULT_TEST_GLOBS if globs is None else globs)).fullmatch(path) is not None


def validate_globs(globs: Iterable[str]) -> list[str]:
    """`globs` as a list, or InvalidInput (field "test_paths") about the first glob that is not acceptable."""
    # A lone string would otherwise pass as a list of one-character globs.
    if isinstance(globs, str):
        raise InvalidInput("test_paths must be a list of globs, not a string", field="test_paths")
    checked = list(globs)
    if len(checked) > MAX_GLOBS:
        raise InvalidInput(f"at most {MAX_GLOBS} test path globs are allowed", field="test_paths")
    for glob in checked:
        problem = _glob_problem(glob)
        if problem:
            raise InvalidInput(f"test path glob {glob!r} {problem}", field="test_paths")
    return checked


def sections(patch: str) -> list[PatchSection]:
    """The per-file sections of `patch` in patch order; anything before the first `diff --git` line is dropped."""
    starts = [match.start() for match in _SECTION_START.finditer(patch)]
    return [_section(patch[start:end]) for start, end in pairwise([*starts, len(patch)])]


def split_patch(patch: str, *, globs: Sequence[str] | None = None) -> ChangeSplit:
    """Split `patch` into source changes and added tests, telling tests by `globs` (defaults when None)."""
    source_files: list[str] = []
    added: list[str] = []
    modified: list[str] = []
    source_text: list[str] = []
    test_text: list[str] = []
    parts = sections(patch)
    # A path the base has is never "added": git writes a type change (file -> link) as a deletion plus an addition.
    on_base = {section.old_path for section in parts if section.old_path is not None}
    for section in parts:
        old_test = section.old_path is not None and is_test_path(section.old_path, globs)
        new_test = section.new_path is not None and is_test_path(section.new_path, globs)
        if section.old_path is not None:
            (modified if old_test else source_files).append(section.old_path)
        if new_test and section.new_path in on_base:
            modified.append(section.new_path)
            continue
        # A test moved to another test path is a change to an existing test, not a new one.
        if section.new_path not in (None, section.old_path) and not (old_test and new_test):
            (added if new_test else source_files).append(section.new_path)
        if not (new_test if section.new_path is not None else old_test):
            source_text.append(section.text)
        elif not old_test:
            test_text.append(section.text)
    return ChangeSplit(
        _unique(source_files), _unique(added), _unique(modified), "".join(source_text), "".join(test_text)
    )


@lru_cache(maxsize=64)
def _compiled(globs: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_translate(glob)})" for glob in globs) or "(?!)")


def _translate(glob: str) -> str:
    """A regex for the paths `glob` matches, those under a matching directory included."""
    body = glob.strip("/")
    if "/" not in body and not glob.startswith("/"):
        body = "**/" + body
    pattern = "".join(_translate_token(token) for token in _GLOB_TOKEN.findall(body))
    return pattern + ("/.+" if glob.endswith("/") else "(?:/.+)?")


def _translate_token(token: str) -> str:
    if token == "**/":
        return "(?:[^/]+/)*"
    if token == "/**":
        return "/.*"
    if token.startswith("*"):
        return "[^/]*"
    if token == "?":
        return "[^/]"
    if len(token) > 2 and token.startswith("["):
        negated = token[1] in "!^"
        members = re.sub(r"([\\\[\]^])", r"\\\1", token[1 + negated : -1])
        return f"[^/{members}]" if negated else f"[{members}]"
    return re.escape(token)


def _glob_problem(glob: object) -> str | None:
    if not isinstance(glob, str) or not glob.strip():
        return "is empty"
    if len(glob) > MAX_GLOB_CHARS:
        return f"is longer than {MAX_GLOB_CHARS} characters"
    if any(char in glob for char in "\0\n\r"):
        return "contains a NUL or a line break"
    if glob.startswith("/"):
        return "is absolute; globs are relative to the repository root"
    if ".." in glob.split("/"):
        return "contains a '..' segment"
    if glob.startswith("!"):
        return "is a negation, which is not supported"
    return None


def _section(text: str) -> PatchSection:
    first, *rest = text.split("\n")
    header = list(takewhile(lambda line: line.startswith(_HEADER_PREFIXES), rest))
    old, new = _header_value(header, "rename from ", "copy from "), _header_value(header, "rename to ", "copy to ")
    old, new = (_unquote(old), _unquote(new)) if old and new else (_unchanged_path(first),) * 2
    if _header_value(header, "new file mode ", "copy to ") is not None:
        return PatchSection(None, new, "added", text)
    if _header_value(header, "deleted file mode ") is not None:
        return PatchSection(old, None, "deleted", text)
    return PatchSection(old, new, "renamed" if old != new else "modified", text)


def _header_value(header: list[str], *prefixes: str) -> str | None:
    return next((line[len(p) :] for line in header for p in prefixes if line.startswith(p)), None)


def _unchanged_path(diff_line: str) -> str:
    """The path of `diff --git a/P b/P`; P may hold spaces, but both halves are the same length when unrenamed."""
    names = diff_line[len("diff --git ") :]
    middle = len(names) // 2
    old, new = _unquote(names[:middle]), _unquote(names[middle + 1 :])
    if names[middle : middle + 1] != " " or not (old.startswith("a/") and new.startswith("b/")) or old[2:] != new[2:]:
        raise ValueError(f"cannot read the paths of {diff_line!r}")
    return old[2:]


def _unquote(name: str) -> str:
    """`name` as git wrote it, C-quoted with octal escapes for bytes when it holds unusual characters."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    raw = _C_ESCAPE.sub(_unescape, name[1:-1].encode())
    return raw.decode("utf-8", errors="surrogateescape")


def _unescape(match: re.Match[bytes]) -> bytes:
    escape = match[1]
    return bytes([int(escape, 8) if len(escape) == 3 else _C_ESCAPES.get(escape, escape[0])])


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
