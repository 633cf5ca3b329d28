"""Workspace preparation for a repository of about 5,000 files: mirror + shared clone vs. a fresh `git clone`.

The fresh clone goes through git's transport (`file://`), as a clone from a remote does; a plain local-path clone
would hard-link objects and hide the cost a network clone pays. The mirror is warm (created once beforehand), as
it is for every run after a repository's first.

    python bench/bench_workspace.py [--files 5000] [--repeat 7]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import median
from yudai_solver.execution.workspace import WorkspaceCache


def make_repo(path: Path, files: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for i in range(files):
        target = path / f"pkg{i % 50}" / f"module_{i}.py"
        target.parent.mkdir(exist_ok=True)
        target.write_text("".join(f"def f_{i}_{j}(x):\n    return x + {j}\n\n" for j in range(20)))
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"], check=True
    )


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        make_repo(repo, args.files)
        cache = WorkspaceCache(root / "mirrors")
        cache.checkout(str(repo), "main", root / "warm")
        mirror, clone, objects_mirror, objects_clone = [], [], [], []
        for i in range(args.repeat):
            # The same two paths without writing the files: what the mirror saves is the object transfer.
            bare = root / f"nb{i}"
            objects_mirror.append(
                timed(
                    lambda: (
                        cache.mirror(str(repo)),
                        subprocess.run(
                            [
                                "git",
                                "clone",
                                "-q",
                                "--shared",
                                "--no-checkout",
                                str(cache.mirror(str(repo))),
                                str(bare),
                            ],
                            check=True,
                        ),
                    )
                )
            )
            bare_clone = root / f"nc{i}"
            objects_clone.append(
                timed(
                    lambda: subprocess.run(
                        ["git", "clone", "-q", "--no-checkout", f"file://{repo}", str(bare_clone)], check=True
                    )
                )
            )
            shutil.rmtree(bare)
            shutil.rmtree(bare_clone)
            dest = root / f"m{i}"
            mirror.append(timed(lambda: cache.checkout(str(repo), "main", dest)))
            other = root / f"c{i}"
            clone.append(
                timed(lambda: subprocess.run(["git", "clone", "-q", f"file://{repo}", str(other)], check=True))
            )
            shutil.rmtree(dest)
            shutil.rmtree(other)
    m, c = median(mirror), median(clone)
    print(
        f"{args.files} files: mirror+checkout median {m * 1000:.0f} ms, fresh clone median {c * 1000:.0f} ms, "
        f"ratio {m / c:.2f} (n={args.repeat})"
    )
    om, oc = median(objects_mirror), median(objects_clone)
    print(
        f"without writing the files (--no-checkout): mirror fetch + shared clone {om * 1000:.0f} ms, "
        f"fresh clone {oc * 1000:.0f} ms, ratio {om / oc:.2f}"
    )


if __name__ == "__main__":
    main()
