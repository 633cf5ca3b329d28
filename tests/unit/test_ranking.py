from yudai_solver.solving.ranking import CRITERIA, Evidence, rank, tied_at_top


def run(id, *, status="completed", passed=True, loc=10, files=1, tokens=100, latency=1000, **evidence):
    evidence.setdefault("source_changed", bool(files))
    return Evidence(id, "m", status, passed, loc, files, tokens, latency, **evidence)


def test_a_noop_never_wins_even_when_every_test_passes():
    ranking = rank([run("noop", loc=0, files=0), run("fix", loc=6)])
    assert ranking.champion.id == "fix"
    assert ranking.why_not == {"noop": "no source change"}


def test_only_noops_and_test_only_changes_give_no_champion_with_a_reason_per_run():
    ranking = rank([run("a", loc=0, files=0), run("b", loc=9, source_changed=False)])
    assert ranking.champion is None
    assert ranking.reason == "no run qualifies (2 runs): run a: no source change; run b: changed only tests"


def test_a_regression_in_an_untouched_test_disqualifies_but_one_in_a_changed_test_only_ranks_lower():
    broke = run("broke", loc=1, regressions=("t.py::test_x",))
    changed = run("changed", loc=2, regressions_in_changed=("t.py::test_y",), tests_modified=1)
    clean = run("clean", loc=30)
    ranking = rank([broke, changed, clean])
    assert ranking.champion.id == "clean"
    assert [e.id for e in ranking.order] == ["clean", "changed", "broke"]
    assert ranking.why_not["broke"].startswith("broke 1 tests it did not change")


def test_base_failures_must_all_be_fixed():
    ranking = rank([run("half", loc=1, base_failures_left=("t.py::test_b",)), run("all", loc=9)])
    assert ranking.champion.id == "all" and "still fail" in ranking.why_not["half"]


def test_reproduction_score_beats_agreement_which_beats_size():
    runs = [
        run("small", loc=1),
        run("agreed", loc=5, agreement=3),
        run("proven", loc=50, reproduction_passed=4, reproduction_total=4),
    ]
    ranking = rank(runs)
    assert [e.id for e in ranking.order] == ["proven", "agreed", "small"]
    assert ranking.reason.startswith(
        "passes 4 of 4 reproduction tests; 50 source lines in 1 files; chosen over run agreed"
    )
    assert "more reproduction tests passed" in ranking.reason


def test_ties_break_on_lines_files_tokens_latency_then_id():
    runs = [
        run("e", loc=5, files=1, tokens=10, latency=10),
        run("d", loc=5, files=1, tokens=10, latency=10),
        run("c", loc=5, files=1, tokens=10, latency=9),
        run("b", loc=5, files=1, tokens=9, latency=99),
        run("a", loc=5, files=2, tokens=1, latency=1),
        run("z", loc=4, files=3, tokens=999, latency=999),
    ]
    assert [e.id for e in rank(runs).order] == ["z", "b", "c", "d", "e", "a"]


def test_the_judge_only_breaks_ties_the_tests_leave():
    tied = [run("a", loc=5), run("b", loc=9), run("c", loc=1, reproduction_passed=0, reproduction_total=2, agreement=1)]
    proven = run("p", reproduction_passed=1, reproduction_total=2)
    assert {e.id for e in tied_at_top(tied)} == {"a", "b", "c"}
    assert [e.id for e in tied_at_top(tied + [proven])] == ["p"]
    assert rank([run("a", loc=5), run("b", loc=9, judged=True)]).champion.id == "b"


def test_failed_runs_never_win_even_with_passing_numbers():
    ranking = rank([run("a", status="failed", error="boom"), run("b", tests_inconclusive=True)])
    assert ranking.champion is None
    assert ranking.why_not == {"a": "failed: boom", "b": "the tests failed"}


def test_ranking_json_names_the_criteria_in_order_and_every_run():
    data = rank([run("a", loc=9), run("b", loc=2), run("n", files=0, loc=0)]).as_json()
    assert data["criteria"] == [c.name for c in CRITERIA]
    assert [(r["rank"], r["run_id"], r["qualified"]) for r in data["order"]] == [
        (1, "b", True),
        (2, "a", True),
        (3, "n", False),
    ]


def test_the_reason_names_the_best_run_with_a_different_change_not_a_twin():
    twin = run("twin", loc=3, fingerprint="f1", agreement=2)
    champion = run("champ", loc=2, fingerprint="f1", agreement=2)
    other = run("other", loc=1, fingerprint="f2")
    reason = rank([twin, champion, other]).reason
    assert "chosen over run other for more runs agree (2 runs agree vs 1 runs agree)" in reason


def test_source_lines_decide_when_known_so_a_thorough_reproduction_test_is_no_handicap():
    tested = run("tested", loc=30, source_loc=2)
    bare = run("bare", loc=3, source_loc=3)
    assert rank([bare, tested]).champion.id == "tested"
