"""Evolution strategies: the prompts an experiment's `evolution` name selects.

Every strategy starts from mini-swe-agent's own `mini.yaml`, so the baseline behaves like upstream. The task
text only ever enters as the Jinja variable `task`; it is never rendered as a template itself.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any, TypedDict

import yaml

from yudai_solver.base.errors import InvalidInput
from yudai_solver.execution.mswea import builtin_config_dir
from yudai_solver.solving.matrix import AUTO_STRATEGY

_MINIMAL_FIX = """

Strategy: minimal fix. Resolve the issue with the smallest possible diff: change as few lines and files as
you can, do not refactor, rename, reformat or touch code unrelated to the issue, and add no files unless the
fix cannot work without them."""

_TEST_FIRST = """

Strategy: test first. Before changing any source code, write a test in the repository's test suite that
reproduces the issue, and run it to confirm that it fails. Then fix the code, and run the test again to confirm
that it passes, together with the existing tests nearest to your change."""


_REPRODUCE_FIRST = """

Strategy: reproduce first. The repository's existing tests do not show this issue yet. Before changing any
source code, write a new test file (for example tests/test_issue_reproduction.py; never edit or delete existing
test files) containing a small test that reproduces the issue, run it and confirm that it fails for the reason
the issue describes. Then fix the source code, run the new test again to confirm that it passes, and run the
existing tests nearest to your change. Keep the new test file in your final changes: it is checked against the
other attempts' fixes."""


class AgentTemplates(TypedDict):
    """The `DefaultAgent` keyword arguments a strategy sets."""

    system_template: str
    instance_template: str


@dataclass(frozen=True)
class Strategy:
    """The agent templates of one evolution (Jinja, rendered by mini-swe-agent with `task` and friends), for a
    model acting by tool calls and for one acting in text (fenced bash blocks, from `mini_textbased.yaml`)."""

    name: str
    system_template: str
    instance_template: str
    text_system_template: str = ""
    text_instance_template: str = ""

    def agent_config(self, action_format: str = "tool_call") -> AgentTemplates:
        """The keyword arguments for `DefaultAgent` (and so `SolverAgent`) that this strategy sets."""
        if action_format == "text":
            return {"system_template": self.text_system_template, "instance_template": self.text_instance_template}
        return {"system_template": self.system_template, "instance_template": self.instance_template}


@cache
def mini_config() -> dict[str, Any]:
    """mini-swe-agent's `mini.yaml` (agent, environment and model sections), parsed once."""
    config: dict[str, Any] = yaml.safe_load((builtin_config_dir / "mini.yaml").read_text(encoding="utf-8"))
    return config


@cache
def mini_text_config() -> dict[str, Any]:
    """mini-swe-agent's `mini_textbased.yaml`: the same for a model that answers with fenced bash blocks."""
    config: dict[str, Any] = yaml.safe_load((builtin_config_dir / "mini_textbased.yaml").read_text(encoding="utf-8"))
    return config


def _from_mini(name: str, guidance: str = "") -> Strategy:
    agent, text = mini_config()["agent"], mini_text_config()["agent"]
    return Strategy(
        name=name,
        system_template=agent["system_template"].rstrip("\n") + guidance + "\n",
        instance_template=agent["instance_template"],
        text_system_template=text["system_template"].rstrip("\n") + guidance + "\n",
        text_instance_template=text["instance_template"],
    )


STRATEGIES: dict[str, Strategy] = {
    "baseline": _from_mini("baseline"),
    "minimal-fix": _from_mini("minimal-fix", _MINIMAL_FIX),
    "test-first": _from_mini("test-first", _TEST_FIRST),
    AUTO_STRATEGY: _from_mini(AUTO_STRATEGY, _REPRODUCE_FIRST),
}


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; raises InvalidInput naming the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise InvalidInput(f"Unknown evolution {name!r}; known: {known}.", field="evolution") from None
