"""The one door to mini-swe-agent: configure its environment variables, then import it.

mini-swe-agent acts at import time: it prints a banner, creates a config directory under `~` and loads a `.env`
from there; litellm fetches its price list from the network. Every module of ours that needs mini-swe-agent
imports it from here, so the variables below are always set first — whatever order an import sorter picks.
Each is only a default (`setdefault`): an operator's explicit setting wins.
"""

import os
import stat
import tempfile
from pathlib import Path


def _private_config_dir() -> str:
    """A per-uid directory under the temp dir, mode 0700; a fresh one if that name is not safely ours.

    mini-swe-agent loads `<dir>/.env` into the process, so a directory another user could have planted
    (wrong owner, a symlink, group/other access) must not be used.
    """
    path = Path(tempfile.gettempdir()) / f"yudai-mswea-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return tempfile.mkdtemp(prefix="yudai-mswea-")
    return str(path)


os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
if "MSWEA_GLOBAL_CONFIG_DIR" not in os.environ:
    os.environ["MSWEA_GLOBAL_CONFIG_DIR"] = _private_config_dir()
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# One attempt per model call: the worker decides about retrying a run; stacked retries take minutes.
os.environ.setdefault("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "1")
# An unknown model's price must cost 0, not crash the run.
os.environ.setdefault("MSWEA_COST_TRACKING", "ignore_errors")

import litellm  # noqa: E402

litellm.suppress_debug_info = True


def _litellm_logs_to_the_log() -> None:
    """litellm's loggers print to stdout/stderr through their own handler (its "custom pricing" warning lands in
    the middle of the CLI's output): drop that handler, so their records go where the process's logging sends
    them — the log, not the CLI's output."""
    import logging

    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        # A process without logging configured (the embedded CLI) would print them through Python's last-resort
        # handler: a handler that drops them keeps them out, and the log's handlers above still get them.
        logger.addHandler(logging.NullHandler())
        logger.propagate = True


_litellm_logs_to_the_log()

from minisweagent.agents.default import DefaultAgent  # noqa: E402
from minisweagent.config import builtin_config_dir  # noqa: E402
from minisweagent.exceptions import FormatError, InterruptAgentFlow, Submitted  # noqa: E402
from minisweagent.models.litellm_model import LitellmModel  # noqa: E402
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel  # noqa: E402
from minisweagent.models.utils.actions_toolcall import BASH_TOOL  # noqa: E402

__all__ = [
    "BASH_TOOL",
    "DefaultAgent",
    "FormatError",
    "InterruptAgentFlow",
    "LitellmModel",
    "LitellmTextbasedModel",
    "Submitted",
    "builtin_config_dir",
    "litellm",
]


def warm_up() -> None:
    """Load what litellm loads on its first use: its tokenizer and the modules a completion and a stream import
    (~0.5 s, holding the GIL). A process that serves requests does it before serving: done by a first run's first
    model call, it paused every request of that moment. Mock answers: no network, no key."""
    messages = [{"role": "user", "content": "warm up"}]
    litellm.token_counter(model="gpt-4o", messages=messages)
    options: dict[str, str] = {"model": "openai/warm-up", "mock_response": "ok", "api_key": "unused"}
    litellm.completion(messages=messages, **options)
    chunks = list(litellm.completion(messages=messages, stream=True, **options))
    litellm.stream_chunk_builder(chunks, messages=messages)
