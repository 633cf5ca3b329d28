"""Which runs made the same source change, up to formatting: runs that agree back each other's fix.

`fingerprint` takes the new contents of the source files a run changed, by repository-relative path (None for a
deleted file), and returns a sha256 hex digest that stays the same when only formatting differs:

- a Python file (`.py`, `.pyi`) counts by its syntax tree, so whitespace, comments, line breaks and redundant
  parentheses do not matter while docstrings and every other value do; a file that does not parse counts as text;
- in other text, whole-line comments are dropped where the file's extension makes them unambiguous (`#` in shell,
  YAML, TOML, Ruby...; `//` in C-like languages, JavaScript, Go, Rust...), and every run of whitespace counts as
  one space.

Paths count as given: the same change made to two different files is a different change. An empty mapping is a
valid input with a fingerprint of its own, so leaving runs without source changes out is the caller's choice.
"""

import ast
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import PurePosixPath

_PYTHON = {".py", ".pyi"}
# Only where a line starting with the marker cannot be code: `#` starts C's #include and Markdown's headings,
# `//` is an operator in Python, so neither is stripped for unlisted extensions.
_HASH_COMMENTS = {
    ".sh",
    ".bash",
    ".zsh",
    ".rb",
    ".pl",
    ".r",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".conf",
    ".properties",
    ".tf",
    ".cmake",
    ".mk",
    ".dockerfile",
}
_HASH_COMMENT_NAMES = {
    "Dockerfile",
    "Makefile",
    "CMakeLists.txt",
    "Gemfile",
    "Rakefile",
    "Pipfile",
    ".gitignore",
    ".dockerignore",
    ".env",
}
_SLASH_COMMENTS = {
    ".js",
    ".jsx",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".mts",
    ".cts",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".kts",
    ".scala",
    ".swift",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".cxx",
    ".hpp",
    ".hh",
    ".cs",
    ".dart",
    ".php",
    ".groovy",
    ".gradle",
    ".proto",
    ".jsonc",
}


def fingerprint(files: Mapping[str, str | None]) -> str:
    """The sha256 hex digest of the normalised new contents of `files` (None for a deleted file)."""
    pairs = sorted((path, None if text is None else _normalised(path, text)) for path, text in files.items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def groups(fingerprints: Mapping[str, str | None]) -> dict[str, int]:
    """Run id -> how many runs share its fingerprint, itself included; 0 for a run without a fingerprint."""
    sizes = Counter(value for value in fingerprints.values() if value is not None)
    return {run: 0 if value is None else sizes[value] for run, value in fingerprints.items()}


def _normalised(path: str, text: str) -> str:
    name = PurePosixPath(path)
    if name.suffix in _PYTHON:
        try:
            return "ast:" + ast.dump(ast.parse(text))
        # Deep nesting exhausts the parser's recursion; NUL bytes are a ValueError.
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
    markers = _comment_markers(name)
    kept = (line for line in text.splitlines() if not line.lstrip().startswith(markers))
    return "text:" + " ".join(" ".join(kept).split())


def _comment_markers(name: PurePosixPath) -> tuple[str, ...]:
    suffix = name.suffix.lower()
    if suffix in _PYTHON or suffix in _HASH_COMMENTS or name.name in _HASH_COMMENT_NAMES:
        return ("#",)
    if suffix in _SLASH_COMMENTS:
        return ("//",)
    return ()
