"""The export script keeps git's stderr out of the patch file, even a warning printed in the middle of a hunk."""

import subprocess
from pathlib import Path

from yudai_solver.sandboxes.e2b_patch import export_script, exported_size

BASE = "0" * 40
FAKE_GIT = """#!/bin/bash
if [ "$1" = add ]; then echo 'warning: from add' >&2; exit 0; fi
printf 'diff --git a/f b/f\\n--- a/f\\n+++ b/f\\n@@ -1 +1,2 @@\\n a\\n'
echo 'warning: in the middle of a hunk' >&2
printf '+b\\n'
"""


def test_a_warning_inside_a_hunk_stays_out_of_the_patch_file(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(FAKE_GIT)
    (bin_dir / "git").chmod(0o755)
    target = tmp_path / "patch.diff"
    done = subprocess.run(
        ["bash", "-c", "exec 2>&1\n" + export_script(BASE, str(target), [])],  # as the wrapper runs it
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert target.read_bytes() == b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n a\n+b\n"
    assert "in the middle of a hunk" in done.stdout and exported_size(done.stdout) == len(target.read_bytes())


def test_the_size_line_read_is_the_last_one():
    assert exported_size("yudai-patch-bytes=1\nnoise\nyudai-patch-bytes=42\n") == 42
    assert exported_size("no size here") is None
