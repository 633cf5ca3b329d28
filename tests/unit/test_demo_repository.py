"""Demos started at the same moment each get a repository of their own."""

from concurrent.futures import ThreadPoolExecutor

from yudai_solver.entry.demo import create_repository, new_repository_path


def test_demos_started_in_the_same_second_get_distinct_repositories(tmp_path):
    root = tmp_path / "demo"
    with ThreadPoolExecutor(4) as pool:
        repos = list(pool.map(lambda _: create_repository(new_repository_path(root)), range(4)))
    assert len(set(repos)) == 4
    assert all((repo / ".git").is_dir() and (repo / "calc.py").is_file() for repo in repos)
