"""Model answers as streams: a request its run abandons (cancel, time budget, timeout) stops the server's generation.

An answer asked for with `stream=True` comes as chunks over one open connection; closing the stream closes the
connection, and a server notices that at its next chunk and stops generating (a non-streaming request would keep
a one-slot CPU server busy until its whole answer is written, for nobody). `stream_options={"include_usage": True}`
asks the server for its own token counts in a last chunk, so a streamed answer is counted exactly as a whole one.

The stream is read in the request's own thread (see `model_gate`), which checks between chunks whether the run let
go of it. A server that sends nothing for the request's `timeout` (say, before its first token) is cut off by the
HTTP client's read timeout instead. A server that ignores `stream_options` sends no counts: litellm then counts the
answer's tokens itself, and `collect` says so.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

from yudai_solver.execution.mswea import litellm

STREAM_KWARGS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
"""What a request adds to be streamed, with the server's usage in its last chunk."""


def collect(
    stream: Any,
    messages: list[dict[str, Any]],
    *,
    cancel: threading.Event,
    deadline: float,
    cancelled: Callable[[], Exception],
    model: str,
) -> tuple[Any, bool]:
    """The whole answer of `stream` (litellm's stream of one request) as one litellm `ModelResponse`, and whether
    its usage is the server's (else litellm's count).

    The stream is closed when this returns or raises: raises `cancelled()` as soon as `cancel` is set and litellm's
    `Timeout` once `time.monotonic()` passes `deadline`, each at the next chunk.
    """
    chunks: list[Any] = []
    try:
        for chunk in stream:
            chunks.append(chunk)
            if cancel.is_set():
                raise cancelled()
            if time.monotonic() > deadline:
                raise litellm.exceptions.Timeout("the answer did not end within the request's timeout", model, "")
    finally:
        _close(stream)
    response = litellm.stream_chunk_builder(chunks, messages=messages)
    if response is None:
        raise litellm.exceptions.APIError(500, "the server's stream ended without an answer", "", model)
    return response, _server_counted(stream)


def _server_counted(stream: Any) -> bool:
    """Whether the server sent its usage: litellm keeps the chunks it received, usage-only ones included, in the
    stream's `chunks` (what it yields ends with a usage chunk of its own making either way)."""
    received = getattr(stream, "chunks", None) or []
    return any(getattr(chunk, "usage", None) is not None for chunk in received)


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if callable(close):
        close()
