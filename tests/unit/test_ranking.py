from yudai_solver.ranking import Outcome, rank


def outcome(id, *, status="completed", passed=True, loc=10, files=1, tokens=100, latency=1000):
    return Outcome(id, "m", status, passed, loc, files, tokens, latency)


def test_passing_beats_smaller_failing():
    ranking = rank([outcome("a", passed=False, loc=1), outcome("b", loc=50)], tests_ran=True)
    assert ranking.champion.id == "b" and [o.id for o in ranking.order] == ["b", "a"]


def test_ties_break_on_lines_files_tokens_latency_then_id():
    runs = [
        outcome("e", loc=5, files=1, tokens=10, latency=10),
        outcome("d", loc=5, files=1, tokens=10, latency=10),
        outcome("c", loc=5, files=1, tokens=10, latency=9),
        outcome("b", loc=5, files=1, tokens=9, latency=99),
        outcome("a", loc=5, files=2, tokens=1, latency=1),
        outcome("z", loc=4, files=3, tokens=999, latency=999),
    ]
    assert [o.id for o in rank(runs, tests_ran=True).order] == ["z", "b", "c", "d", "e", "a"]


def test_failed_runs_never_win_even_with_passing_numbers():
    ranking = rank([outcome("a", status="failed"), outcome("b", passed=False)], tests_ran=True)
    assert ranking.champion is None and "no run passed the tests" in ranking.reason


def test_without_tests_a_non_empty_change_wins():
    runs = [outcome("a", passed=None, loc=0, files=0), outcome("b", passed=None, loc=3, files=1)]
    ranking = rank(runs, tests_ran=False)
    assert ranking.champion.id == "b" and "no test command" in ranking.reason


def test_ranking_json_lists_every_run_with_its_rank():
    data = rank([outcome("a", loc=9), outcome("b", loc=2)], tests_ran=True).as_json()
    assert data["champion_run_id"] == "b" and [(r["rank"], r["run_id"]) for r in data["order"]] == [(1, "b"), (2, "a")]
