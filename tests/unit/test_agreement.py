"""Runs agree when their source changes are the same up to formatting."""

from yudai_solver.solving.agreement import fingerprint, groups

FIX = '''\
def clamp(value, low, high):
    """Keep value within [low, high]."""
    if value < low:
        return low
    return min(value, high)
'''

# The same fix: other indentation width, comments, extra parentheses, a wrapped call and blank lines.
FIX_REFORMATTED = '''\
def clamp(value,
          low, high):  # bounds are inclusive
  """Keep value within [low, high]."""

  # below the range
  if (value < low):
      return (low)
  return min(
      value,
      high,
  )
'''

OTHER_FIX = '''\
def clamp(value, low, high):
    """Keep value within [low, high]."""
    return max(low, min(value, high))
'''


def test_python_fixes_differing_only_in_formatting_agree():
    assert fingerprint({"src/util.py": FIX}) == fingerprint({"src/util.py": FIX_REFORMATTED})


def test_a_different_python_fix_does_not_agree():
    assert fingerprint({"src/util.py": FIX}) != fingerprint({"src/util.py": OTHER_FIX})


def test_docstrings_and_values_still_count():
    assert fingerprint({"a.py": FIX}) != fingerprint({"a.py": FIX.replace("Keep value", "Keep the value")})
    assert fingerprint({"a.py": "x = 1\n"}) != fingerprint({"a.py": "x = 2\n"})


def test_python_that_does_not_parse_is_compared_as_text():
    broken = "def f(:\n    return 1\n"
    assert fingerprint({"a.py": broken}) == fingerprint({"a.py": "# note\ndef  f(:\n  return 1"})
    assert fingerprint({"a.py": broken}) != fingerprint({"a.py": "def f(:\n    return 2\n"})


def test_non_python_files_agree_across_whitespace():
    one = "function add(a, b) {\n    return a + b;\n}\n"
    other = "function add(a, b) {\n\treturn a + b;   \n\n}"
    assert fingerprint({"src/add.js": one}) == fingerprint({"src/add.js": other})
    assert fingerprint({"src/add.js": one}) != fingerprint({"src/add.js": one.replace("a + b", "a - b")})


def test_whole_line_comments_are_dropped_only_where_unambiguous():
    assert fingerprint({"a.js": "// why\nx = 1;\n"}) == fingerprint({"a.js": "x = 1;\n"})
    assert fingerprint({"ci.yml": "  # why\non: push\n"}) == fingerprint({"ci.yml": "on: push\n"})
    assert fingerprint({"run.sh": "#!/bin/sh\necho hi\n"}) == fingerprint({"run.sh": "echo hi\n"})
    # In C, `#` starts a directive; in Markdown, a heading.
    assert fingerprint({"a.c": "#include <a.h>\n"}) != fingerprint({"a.c": "#include <b.h>\n"})
    assert fingerprint({"README.md": "# Title\n"}) != fingerprint({"README.md": "# Other\n"})


def test_a_deletion_differs_from_a_change_and_from_an_empty_file():
    deleted = fingerprint({"src/util.py": None})
    assert deleted != fingerprint({"src/util.py": FIX})
    assert deleted != fingerprint({"src/util.py": ""})
    assert deleted == fingerprint({"src/util.py": None})


def test_paths_count_and_order_does_not():
    both = {"a.py": FIX, "b.txt": "hello"}
    assert fingerprint(both) == fingerprint(dict(reversed(both.items())))
    assert fingerprint({"a.py": FIX}) != fingerprint({"b.py": FIX})
    assert fingerprint({"a.py": FIX}) != fingerprint(both)


def test_fingerprint_is_a_sha256_hex_digest():
    digest = fingerprint({"a.py": FIX})
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_groups_count_the_runs_sharing_a_fingerprint():
    assert groups({"r1": "aaa", "r2": "bbb", "r3": "aaa", "r4": None, "r5": "aaa"}) == {
        "r1": 3,
        "r2": 1,
        "r3": 3,
        "r4": 0,
        "r5": 3,
    }
    assert groups({}) == {}
    assert groups({"only": None}) == {"only": 0}
