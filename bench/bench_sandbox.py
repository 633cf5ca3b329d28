"""Per-command overhead of the bubblewrap sandbox against the local one (target: bubblewrap adds <= 20 ms).

Both sandboxes run the same commands in checkouts of the same repository (a shared clone of a mirror, as runs
get), through the same `execute` path the agent uses. Commands alternate between the two sandboxes to spread
machine noise evenly; each figure is a median. Also times making each sandbox (bubblewrap hands the workspace to
its uid) for a repository of `--files` files. Needs root and `bwrap`.

    python bench/bench_sandbox.py [--repeat 200] [--files 3000]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_workspace import make_repo
from harness import median
from yudai_solver.base.settings import Settings
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import create_sandbox

# An absolute python3: the worker's PATH may start with shims (pyenv) that bubblewrap does not show.
COMMANDS = ["true", "ls", "git status --short", "/usr/bin/python3 -c pass"]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--files", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yudai-bench-sandbox-") as tmp:
        root = Path(tmp)
        make_repo(root / "repo", args.files)
        settings = Settings(data_dir=root / "data")
        cache = WorkspaceCache(root / "mirrors")
        boxes, creation = {}, {}
        for kind in ("local", "bubblewrap"):
            workspace = root / kind / "work"
            cache.checkout(str(root / "repo"), "main", workspace)
            creation[kind] = timed(
                lambda: boxes.__setitem__(
                    kind, create_sandbox(kind, workspace=workspace, home=root / kind / "home", settings=settings)
                )
            )
        print(f"{args.files} files, {args.repeat} runs of each command per sandbox, medians in ms\n")
        print("| command | local | bubblewrap | added |\n|---|---|---|---|")
        for command in COMMANDS:
            times = {kind: [] for kind in boxes}
            for _ in range(args.repeat):
                for kind, box in boxes.items():
                    times[kind].append(timed(lambda: box.execute({"command": command})))
            local, bwrap = median(times["local"]) * 1000, median(times["bubblewrap"]) * 1000
            print(f"| `{command}` | {local:.1f} | {bwrap:.1f} | **{bwrap - local:+.1f}** |")
        print(
            f"\nmaking the sandbox: local {creation['local'] * 1000:.1f} ms, "
            f"bubblewrap {creation['bubblewrap'] * 1000:.1f} ms (hands {args.files} files to its uid)"
        )
        print(subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip())
        for box in boxes.values():
            box.close()


if __name__ == "__main__":
    main()
