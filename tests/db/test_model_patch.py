"""`PATCH /models/{id}` merges its `config` into the stored one (JSON merge patch, RFC 7396), on both databases.

Before, the `config` of a PATCH replaced the stored one: a price-only PATCH silently removed the model's `api_base`,
so its runs went to the provider's own endpoint.
"""

import pytest

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel
from yudai_solver.solving.ai_models import merge_patch

SERVER = "http://127.0.0.1:1/v1"


@pytest.fixture
def admin(api) -> dict:
    return api.user("root", admin=True)


def add(api, admin, config: dict) -> int:
    spec = {"name": "local", "provider": "openai", "model_id": "qwen", "config": config}
    created = api.client.post("/models", json=spec, headers=admin)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def patch(api, admin, model_id: int, body: dict) -> dict:
    response = api.client.patch(f"/models/{model_id}", json=body, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["config"]


def stored(api, model_id: int) -> dict:
    with api.session_factory() as session:
        return session.get(AIModel, model_id).config


def named_fields(response) -> str:
    data = response.json()
    if isinstance(data["detail"], list):
        return " ".join(".".join(map(str, error["loc"])) for error in data["detail"])
    return data.get("field", "")


def test_a_price_only_patch_keeps_the_api_base_and_the_key_variable(api, admin):
    model_id = add(api, admin, {"api_base": SERVER, "api_key_env": "MY_KEY", "max_tokens": 512})

    answered = patch(api, admin, model_id, {"config": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}})

    expected = {
        "api_base": SERVER,
        "api_key_env": "MY_KEY",
        "max_tokens": 512,
        "input_cost_per_token": 1e-7,
        "output_cost_per_token": 2e-7,
    }
    assert answered == expected
    assert stored(api, model_id) == expected
    # A PATCH without `config` leaves it alone too.
    patch(api, admin, model_id, {"is_active": False})
    assert stored(api, model_id) == expected


def test_null_removes_a_key_and_only_that_key(api, admin):
    model_id = add(api, admin, {"api_base": SERVER, "api_key_env": "MY_KEY", "top_p": 0.9, "temperature": 0.2})

    assert patch(api, admin, model_id, {"config": {"api_key_env": None, "top_p": None, "missing": None}}) == {
        "api_base": SERVER,
        "temperature": 0.2,
    }
    assert stored(api, model_id) == {"api_base": SERVER, "temperature": 0.2}
    # `config: null` removes the whole config, as a merge patch of the model does.
    assert patch(api, admin, model_id, {"config": None}) == {}
    assert stored(api, model_id) == {}


def test_an_object_merges_key_by_key_at_any_depth_and_a_list_replaces(api, admin):
    model_id = add(
        api,
        admin,
        {
            "api_base": SERVER,
            "extra_headers": {"X-Team": "a", "X-Trace": "1", "X-Deep": {"keep": 1, "drop": 2}},
            "stop": ["</s>", "<|end|>"],
        },
    )

    answered = patch(
        api,
        admin,
        model_id,
        {"config": {"extra_headers": {"X-Trace": None, "X-New": "n", "X-Deep": {"drop": None}}, "stop": ["END"]}},
    )

    expected = {
        "api_base": SERVER,
        "extra_headers": {"X-Team": "a", "X-New": "n", "X-Deep": {"keep": 1}},
        "stop": ["END"],
    }
    assert answered == expected
    assert stored(api, model_id) == expected
    # A non-object value replaces an object, and an object replaces a non-object.
    assert patch(api, admin, model_id, {"config": {"extra_headers": "none", "stop": {"a": 1, "b": None}}}) == {
        "api_base": SERVER,
        "extra_headers": "none",
        "stop": {"a": 1},
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"config": {"input_cost_per_token": NaN}}', "input_cost_per_token"),
        ('{"config": {"temperature": Infinity}}', "temperature"),
        ('{"config": {"api_base": "http://x\\u0000/v1"}}', "api_base"),
        ('{"config": {"api_key_env": "MY\\u0000KEY"}}', "api_key_env"),
        ('{"config": {"extra_headers": {"X-Team": "a\\u0000"}}}', "config"),
        ('{"config": {"extra_headers": {"X-Score": -Infinity}}}', "config"),
        ('{"config": {"extra_headers": {"X\\u0000": "a"}}}', "config"),
        ('{"config": {"api_key_env": "YUDAI_GITHUB_TOKEN"}}', "api_key_env"),
        ('{"config": {"output_cost_per_token": -1}}', "output_cost_per_token"),
    ],
)
def test_a_patch_with_nan_or_nul_is_a_422_naming_the_field_and_changes_nothing(api, admin, text, field):
    original = {"api_base": SERVER, "extra_headers": {"X-Team": "a"}}
    model_id = add(api, admin, original)

    response = api.client.patch(
        f"/models/{model_id}", content=text.encode(), headers=admin | {"Content-Type": "application/json"}
    )

    assert response.status_code == 422 and field in named_fields(response), response.text
    assert stored(api, model_id) == original


def test_a_patch_onto_a_stored_config_that_no_longer_validates_is_a_422_naming_config(api, admin):
    with transaction(api.session_factory) as session:
        row = AIModel(name="legacy", provider="openai", model_id="m", config={"api_base": "ftp://old"})
        session.add(row)
        session.flush()
        model_id = row.id

    response = api.client.patch(f"/models/{model_id}", json={"config": {"max_tokens": 10}}, headers=admin)

    assert response.status_code == 422 and response.json()["field"] == "config", response.text
    assert "api_base" in response.json()["detail"]
    assert stored(api, model_id) == {"api_base": "ftp://old"}
    # Removing the bad key in the same patch repairs it.
    assert patch(api, admin, model_id, {"config": {"api_base": None, "max_tokens": 10}}) == {"max_tokens": 10}


@pytest.mark.parametrize(
    ("target", "document", "result"),
    [  # RFC 7396, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7396_and_changes_neither_argument(target, document, result):
    before = repr((target, document))
    assert merge_patch(target, document) == result
    assert repr((target, document)) == before
