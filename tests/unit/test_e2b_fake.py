"""The fake E2B SDK keeps to the real one: the same signatures (the SDK's `**opts: Unpack[ApiParams]` spelled out as
keyword-only parameters), so a call the real SDK would refuse fails here too."""

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from e2b import Sandbox
from e2b.connection_config import ApiParams
from e2b.envd.process.process_connect import ProcessClientSync
from e2b.sandbox_sync.filesystem.filesystem import Filesystem
from e2b.sandbox_sync.paginator import SandboxPaginator

from tests.fakes.e2b_sdk import FakeEnvd, FakeFilesystem, FakePaginator, FakeSandbox


def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Parameters as (name, kind, default), `self`/`cls` dropped and `**opts: Unpack[ApiParams]` expanded."""
    found = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            assert "ApiParams" in str(parameter.annotation), function
            found += [(name, inspect.Parameter.KEYWORD_ONLY, None) for name in ApiParams.__annotations__]
            continue
        found.append((parameter.name, parameter.kind, parameter.default))
    return found


PAIRS = [
    (Sandbox.create, FakeSandbox.create),
    (Sandbox.list, FakeSandbox.list),
    (Sandbox._cls_kill, FakeSandbox._cls_kill),
    (Sandbox._cls_set_timeout, FakeSandbox._cls_set_timeout),
    (Sandbox.__dict__["kill"].method, FakeSandbox.__dict__["kill"].method),
    (Sandbox.__dict__["set_timeout"].method, FakeSandbox.__dict__["set_timeout"].method),
    (Sandbox.__dict__["update_network"].method, FakeSandbox.update_network),
    (Sandbox.__dict__["get_info"].method, FakeSandbox.__dict__["get_info"].method),
    (Sandbox._cls_get_info, FakeSandbox._cls_get_info),
    (Sandbox.is_running, FakeSandbox.is_running),
    (SandboxPaginator.next_items, FakePaginator.next_items),
    (Filesystem.read, FakeFilesystem.read),
    (Filesystem.write, FakeFilesystem.write),
    (ProcessClientSync.start, FakeEnvd.start),
    (ProcessClientSync.send_signal, FakeEnvd.send_signal),
]


@pytest.mark.parametrize(("real", "fake"), PAIRS, ids=[real.__qualname__ for real, _ in PAIRS])
def test_the_fake_has_the_sdks_signature(real, fake):
    assert shape(fake) == shape(real)


def test_the_fake_has_no_catch_all_keywords():
    for _, fake in PAIRS:
        kinds = {p.kind for p in inspect.signature(fake).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
