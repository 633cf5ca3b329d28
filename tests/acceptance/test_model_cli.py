"""`yudai model add / list / update / remove` as a subprocess, against a database of each kind."""

import json

import pytest
from sqlalchemy import select

from tests.acceptance.test_cli import yudai
from yudai_solver.base.models import AIModel

pytestmark = pytest.mark.slow

SERVER = "http://127.0.0.1:9/v1"


def config_of(session_factory, name: str) -> dict | None:
    with session_factory() as session:
        row = session.scalar(select(AIModel).where(AIModel.name == name))
        return None if row is None else {**row.config, "(active)": row.is_active}


def test_update_changes_only_what_it_is_given_and_list_shows_it(database_url, session_factory, tmp_path):
    def run(*args: str):
        return yudai("model", *args, data_dir=tmp_path, YUDAI_DATABASE_URL=database_url)

    added = run(
        "add", "local", "--provider", "openai", "--model-id", "qwen", "--api-base", SERVER, "--api-key-env", "MY_KEY"
    )
    assert added.returncode == 0, added.stdout + added.stderr
    assert config_of(session_factory, "local") == {"api_base": SERVER, "api_key_env": "MY_KEY", "(active)": True}

    priced = run("update", "local", "--price-in", "0.15", "--price-out", "0.6", "--action-format", "text")
    assert priced.returncode == 0, priced.stdout + priced.stderr
    assert config_of(session_factory, "local") == {
        "api_base": SERVER,  # kept: a price-only change once removed it
        "api_key_env": "MY_KEY",
        "input_cost_per_token": 0.15 / 1_000_000,
        "output_cost_per_token": 0.6 / 1_000_000,
        "action_format": "text",
        "(active)": True,
    }

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    fields = line.split("\t")
    assert fields[1:4] == ["local", "openai/qwen", "active"]
    assert json.loads(fields[4])["api_base"] == SERVER
    assert fields[5] == "(in $0.15/M, out $0.6/M)"

    unset = run("update", "local", "--unset", "api_key_env", "--api-base", "http://127.0.0.1:10/v1", "--inactive")
    assert unset.returncode == 0, unset.stdout + unset.stderr
    assert config_of(session_factory, "local") == {
        "api_base": "http://127.0.0.1:10/v1",
        "input_cost_per_token": 0.15 / 1_000_000,
        "output_cost_per_token": 0.6 / 1_000_000,
        "action_format": "text",
        "(active)": False,
    }
    assert "inactive" in run("list").stdout


def test_bad_values_and_unknown_names_fail_and_change_nothing(database_url, session_factory, tmp_path):
    def run(*args: str):
        return yudai("model", *args, data_dir=tmp_path, YUDAI_DATABASE_URL=database_url)

    assert run("add", "local", "--provider", "openai", "--model-id", "qwen", "--api-base", SERVER).returncode == 0
    before = config_of(session_factory, "local")

    service_key = run("update", "local", "--api-key-env", "YUDAI_GITHUB_TOKEN")
    assert service_key.returncode == 2 and "api_key_env" in service_key.stdout, service_key.stdout
    negative = run("update", "local", "--price-in", "-1")
    assert negative.returncode == 2 and "input_cost_per_token" in negative.stdout, negative.stdout
    assert run("update", "local", "--action-format", "json").returncode != 0
    assert run("update", "local").returncode != 0  # nothing to change
    unknown = run("update", "nope", "--price-in", "1")
    assert unknown.returncode == 2 and "nope" in unknown.stdout
    assert config_of(session_factory, "local") == before

    refused = run("add", "other", "--provider", "openai", "--model-id", "m", "--api-key-env", "YUDAI_DATABASE_URL")
    assert refused.returncode == 2 and "api_key_env" in refused.stdout
    assert config_of(session_factory, "other") is None


def test_remove_deletes_an_unused_model_and_names_an_unknown_one(database_url, session_factory, tmp_path):
    def run(*args: str):
        return yudai("model", *args, data_dir=tmp_path, YUDAI_DATABASE_URL=database_url)

    assert run("add", "spare", "--provider", "openai", "--model-id", "m").returncode == 0
    assert run("add", "kept", "--provider", "openai", "--model-id", "k").returncode == 0

    removed = run("remove", "spare")
    assert removed.returncode == 0 and "removed model 'spare'" in removed.stdout, removed.stdout + removed.stderr
    assert config_of(session_factory, "spare") is None
    assert [line.split("\t")[1] for line in run("list").stdout.splitlines()] == ["kept"]

    again = run("remove", "spare")
    assert again.returncode == 2 and "spare" in again.stdout
    assert config_of(session_factory, "kept") is not None


def test_add_takes_prices_the_key_variable_and_the_action_format(database_url, session_factory, tmp_path):
    added = yudai(
        "model", "add", "gateway", "--provider", "openai", "--model-id", "qwen", "--api-base", SERVER,
        "--api-key-env", "GATEWAY_KEY", "--price-in", "0.5", "--price-out", "2", "--action-format", "text",
        data_dir=tmp_path, YUDAI_DATABASE_URL=database_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert config_of(session_factory, "gateway") == {
        "api_base": SERVER,
        "api_key_env": "GATEWAY_KEY",
        "input_cost_per_token": 0.5 / 1_000_000,
        "output_cost_per_token": 2 / 1_000_000,
        "action_format": "text",
        "(active)": True,
    }
    refused = yudai(
        "model", "add", "free", "--provider", "openai", "--model-id", "m", "--price-out", "-1",
        data_dir=tmp_path, YUDAI_DATABASE_URL=database_url,
    )  # fmt: skip
    assert refused.returncode == 2 and "output_cost_per_token" in refused.stdout, refused.stdout
    assert config_of(session_factory, "free") is None
