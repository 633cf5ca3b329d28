"""A remote git is killed when nothing moves, not when it works without talking (a long connectivity check)."""

import time

import pytest

from yudai_solver.base import git

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier


def run_alias(command: str, *, stall_s: float, timeout_s: float) -> tuple[str, float]:
    """The error of a git whose work is `command` (a shell alias, standing in for git's own children), and when."""
    started = time.monotonic()
    with pytest.raises(git.GitError) as raised:
        git.remote(
            "-c",
            f"alias.work=!{command}",
            "work",
            env=git.trusted_env(),
            limits=git.RemoteLimits(timeout_s=timeout_s, stall_s=stall_s),
        )
    return str(raised.value), time.monotonic() - started


def test_a_git_that_neither_reads_writes_nor_computes_is_stalled():
    error, took = run_alias("sleep 60", stall_s=2, timeout_s=30)
    assert "stalled: nothing moved for 2 s" in error and took < 5


def test_a_git_that_computes_without_input_or_output_is_not_stalled():
    error, took = run_alias("python3 -c 'while True: pass'", stall_s=1, timeout_s=4)
    assert "timed out after 4 s" in error and took < 8


def test_a_git_whose_children_keep_writing_is_not_stalled():
    error, took = run_alias("while sleep 0.3; do echo tick >&2; done", stall_s=1, timeout_s=4)
    assert "timed out after 4 s" in error and took < 8
