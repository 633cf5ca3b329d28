"""Creating E2B sandboxes (idempotent, backing off when refused) and sweeping the orphans a dead worker left,
against `tests/fakes/e2b_sdk.py`."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.e2b_sdk import FakeCloud, fake_sdk
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import e2b_client, e2b_fleet
from yudai_solver.sandboxes.e2b import E2BError, kill_orphans
from yudai_solver.sandboxes.e2b_fleet import create_box, run_group

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="the fake runs commands with bubblewrap as root"
)
TAG = {"app": "yudai-solver", "owner": "worker-a"}


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch) -> Iterator[FakeCloud]:
    service = FakeCloud(tmp_path / "e2b")
    monkeypatch.setattr(e2b_client, "sdk", lambda: fake_sdk(service))
    monkeypatch.setattr(e2b_fleet, "_FIRST_PAUSE_S", 0.01)
    yield service
    for vm in list(service.boxes.values()):
        vm.die()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", e2b_owner="worker-a")


def create(settings: Settings, **metadata: str):
    return create_box(settings, template="base", lifetime_s=60, network=False, metadata=TAG | metadata)


def alive(cloud: FakeCloud) -> list[str]:
    return [vm.sandbox_id for vm in cloud.alive()]


# --- create -------------------------------------------------------------------------------------------------------


def test_rate_limits_and_a_busy_service_are_retried_with_backoff_and_the_same_key(cloud, settings):
    cloud.fail("create", 429, 503, 429)
    box = create(settings)
    created = [call[1] for call in cloud.calls if call[0] == "create"]
    assert len(created) == 4 and len({c["idempotency_key"] for c in created}) == 1 and alive(cloud) == [box.sandbox_id]


def test_refusals_that_outlast_the_wait_fail_naming_the_setting(cloud, settings):
    cloud.fail("create", *[503] * 50)
    started = time.monotonic()
    with pytest.raises(E2BError, match=r"refused to create a sandbox for 0 s \(e2b_create_wait_s\)"):
        create(settings.model_copy(update={"e2b_create_wait_s": 0.2}))
    assert time.monotonic() - started < 1 and alive(cloud) == []


def test_a_lost_answer_is_answered_with_the_same_sandbox_not_a_duplicate(cloud, settings):
    cloud.lost_create_answers = 2
    box = create(settings)
    assert alive(cloud) == [box.sandbox_id] == ["sbx0"]


def test_other_creation_errors_are_not_retried(cloud, settings):
    cloud.fail("create", 401)
    with pytest.raises(E2BError, match="AuthenticationException"):
        create(settings)
    assert len([call for call in cloud.calls if call[0] == "create"]) == 1


# --- the orphan sweep ---------------------------------------------------------------------------------------------


def test_orphans_of_this_owner_are_killed_across_pages_and_no_others(cloud, settings):
    cloud.page_size = 2
    mine = [create(settings, workspace=f"/w{i}").sandbox_id for i in range(5)]
    theirs = create(settings, owner="worker-b").sandbox_id
    untagged = create_box(settings, template="base", lifetime_s=60, network=False, metadata={"owner": "worker-a"})
    assert sorted(kill_orphans(settings, keep={mine[2]})) == sorted(mine[:2] + mine[3:])
    assert sorted(alive(cloud)) == sorted([mine[2], theirs, untagged.sandbox_id])
    assert [call for call in cloud.calls if call[0] == "list"] == [("list", None), ("list", "2"), ("list", "4")]
    assert kill_orphans(settings, keep={mine[2]}) == []


def test_a_runs_baseline_sandbox_is_spared_with_the_run(cloud, settings):
    run_dir = settings.data_dir / "runs" / "r1"
    main = create(settings, group=run_group(run_dir / "work")).sandbox_id
    baseline = create(settings, group=run_group(run_dir / "baseline" / "work")).sandbox_id
    other = create(settings, group=run_group(settings.data_dir / "runs" / "r2" / "baseline" / "work")).sandbox_id
    assert kill_orphans(settings, keep={main}) == [other]
    assert sorted(alive(cloud)) == sorted([main, baseline])


def test_one_failing_kill_does_not_end_the_sweep(cloud, settings):
    ids = [create(settings).sandbox_id for _ in range(3)]
    cloud.fail("kill", 503)  # the first kill meets a busy service; the SDK's retries are its own business
    assert kill_orphans(settings) == ids[1:]
    assert alive(cloud) == ids[:1]


def test_a_sandbox_already_gone_is_not_counted_as_killed(cloud, settings, monkeypatch):
    ids = [create(settings).sandbox_id for _ in range(2)]
    listed = e2b_fleet._listed

    def listed_then_one_dies(tag, deadline):
        found = listed(tag, deadline)
        cloud.boxes[ids[0]].die()  # E2B ended it between the list and the kill: the kill answers 404
        return found

    monkeypatch.setattr(e2b_fleet, "_listed", listed_then_one_dies)
    assert kill_orphans(settings) == ids[1:]


@pytest.mark.parametrize("status", [401, 429, 503])
def test_a_failing_list_never_raises(cloud, settings, status):
    ids = [create(settings).sandbox_id for _ in range(2)]
    cloud.fail("list", status)
    assert kill_orphans(settings) == []
    assert kill_orphans(settings) == ids  # the next start sweeps them


def test_a_page_that_fails_ends_the_list_and_what_was_read_is_swept(cloud, settings):
    cloud.page_size = 1
    ids = [create(settings).sandbox_id for _ in range(3)]
    cloud.fail("list", 200, 503)
    assert kill_orphans(settings) == ids[:1]


def test_the_sweep_is_bounded_in_time(cloud, settings):
    for _ in range(3):
        create(settings)
    started = time.monotonic()
    assert kill_orphans(settings.model_copy(update={"e2b_sweep_s": 0})) == []
    assert time.monotonic() - started < 1 and len(alive(cloud)) == 3


def test_the_run_group_is_the_run_directory():
    assert run_group(Path("/d/runs/r1/work")) == "/d/runs/r1"
    assert run_group(Path("/d/runs/r1/baseline/work")) == "/d/runs/r1"
    assert run_group(Path("/elsewhere/verify/work")) == "/elsewhere/verify"
