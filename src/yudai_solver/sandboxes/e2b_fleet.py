"""This worker's E2B sandboxes as a fleet: created once each (idempotent, backing off when refused), throttled,
tagged with their owner and run, and swept at start-up when a dead worker left them behind."""

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import e2b_client
from yudai_solver.sandboxes.e2b_client import E2BError

if TYPE_CHECKING:
    import e2b

log = logging.getLogger(__name__)
APP = "yudai-solver"
_FIRST_PAUSE_S = 1.0
_MAX_PAUSE_S = 30.0
_SWEEP_REQUEST_S = 10.0


def owner(settings: Settings) -> str:
    """The metadata tag of this worker's sandboxes."""
    return settings.e2b_owner or socket.gethostname()


def run_group(workspace: Path) -> str:
    """The run directory a workspace belongs to (`.../runs/<run id>`): a run's sandbox (`<run dir>/work`) and its
    baseline's (`<run dir>/baseline/work`) share it, so the sweep spares them together."""
    parts = workspace.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "runs":
            return str(Path(*parts[: index + 2]))
    return str(workspace.parent)


def create_box(settings: Settings, *, template: str, lifetime_s: int, network: bool, metadata: dict[str, str]) -> Any:
    """A new sandbox. One idempotency key per sandbox: the SDK's own retries (429/502/503/504) and ours resend it,
    so a creation whose answer was lost is answered with the same sandbox instead of a duplicate. Rate-limit and
    service-busy refusals are retried with exponential backoff for `e2b_create_wait_s`; other errors are not."""
    from e2b import RateLimitException, ServiceBusyException

    key = str(uuid.uuid4())  # lowercase letters, digits and hyphens, as `resolve_idempotency_key` requires
    deadline, pause = time.monotonic() + settings.e2b_create_wait_s, _FIRST_PAUSE_S
    while True:
        try:
            return translated_create(template, lifetime_s, network, metadata, key)
        except (RateLimitException, ServiceBusyException) as exc:
            wait = pause * random.uniform(0.5, 1.0)  # jitter: workers refused together do not retry together
            if time.monotonic() + wait > deadline:
                raise E2BError(
                    f"e2b refused to create a sandbox for {settings.e2b_create_wait_s:.0f} s "
                    f"(e2b_create_wait_s): {type(exc).__name__}: {exc}"
                ) from None
            log.info("e2b refused a creation (%s); retrying in %.1f s", type(exc).__name__, wait)
            time.sleep(wait)
            pause = min(pause * 2, _MAX_PAUSE_S)


def translated_create(template: str, lifetime_s: int, network: bool, metadata: dict[str, str], key: str) -> Any:
    """`Sandbox.create`, letting the refusals worth a retry through and translating every other error."""
    from e2b import RateLimitException, ServiceBusyException

    try:
        return e2b_client.sdk().create(
            template=template,
            timeout=lifetime_s,
            allow_internet_access=network,
            metadata=metadata,
            idempotency_key=key,
        )
    except (RateLimitException, ServiceBusyException):
        raise
    except Exception as exc:  # noqa: BLE001 - the edge where third-party errors are translated
        raise E2BError(f"e2b: {type(exc).__name__}: {exc}") from None


def kill_orphans(settings: Settings, *, keep: Collection[str] = ()) -> list[str]:
    """Kill the live or paused E2B sandboxes tagged with this worker's owner, except those in `keep` and those of
    the same run as one in `keep` (a run's baseline sandbox); returns the ids E2B confirmed killed.

    For start-up, after runs left running by a dead process were settled: `keep` holds the sandbox ids of runs
    that still run elsewhere under the same owner (none, for the embedded dispatcher). Never raises and never takes
    much more than `e2b_sweep_s`: a failing page or kill is logged and skipped, so a worker always starts.
    """
    deadline = time.monotonic() + settings.e2b_sweep_s
    tag = {"app": APP, "owner": owner(settings)}
    found = _listed(tag, deadline)
    spared = {info.metadata.get("group") for info in found if info.sandbox_id in keep} - {None}
    killed = []
    for info in found:
        if info.sandbox_id in keep or info.metadata.get("group") in spared:
            continue
        if _kill_one(info.sandbox_id, deadline):
            killed.append(info.sandbox_id)
    return killed


def _listed(tag: dict[str, str], deadline: float) -> "list[e2b.SandboxInfo]":
    """Every page of the owner's sandboxes that could be read before `deadline` (one failing page ends the list)."""
    from e2b import SandboxQuery

    found: list[e2b.SandboxInfo] = []
    try:
        pages = e2b_client.sdk().list(query=SandboxQuery(metadata=tag))
        while pages.has_next and time.monotonic() < deadline:
            found += pages.next_items(request_timeout=_request_s(deadline))
    except Exception as exc:  # noqa: BLE001 - the sweep is best effort; the worker must start
        name = type(exc).__name__
        log.warning("listing orphaned e2b sandboxes failed (%s: %s); sweeping the %d found", name, exc, len(found))
    # The API filters by metadata; checked again so a sandbox of another owner is never killed.
    return [info for info in found if all((info.metadata or {}).get(k) == v for k, v in tag.items())]


def _kill_one(sandbox_id: str, deadline: float) -> bool:
    if time.monotonic() >= deadline:
        log.warning("orphaned e2b sandbox %s left: the sweep ran out of time (e2b_sweep_s)", sandbox_id)
        return False
    try:
        return bool(e2b_client.sdk().kill(sandbox_id, request_timeout=_request_s(deadline)))
    except Exception as exc:  # noqa: BLE001 - one failing kill must not end the sweep
        log.warning("killing orphaned e2b sandbox %s failed: %s: %s", sandbox_id, type(exc).__name__, exc)
        return False


def _request_s(deadline: float) -> float:
    return max(1.0, min(_SWEEP_REQUEST_S, deadline - time.monotonic()))


class Throttle:
    """At most `cap` sandboxes alive at once, and creations spaced `1 / per_s` seconds apart."""

    def __init__(self, per_s: float, cap: int):
        self._slots = threading.BoundedSemaphore(cap)
        self._interval = 1 / per_s if per_s > 0 else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self, timeout: float) -> None:
        """Wait for a free slot and for the next creation time; E2BError after `timeout` seconds without a slot."""
        if not self._slots.acquire(timeout=timeout):
            raise E2BError(f"no e2b sandbox slot became free within {timeout} s")
        with self._lock:
            now = time.monotonic()
            start, self._next = max(now, self._next), max(now, self._next) + self._interval
        time.sleep(max(0.0, start - now))

    def release(self) -> None:
        self._slots.release()


_THROTTLES: dict[tuple[float, int], Throttle] = {}
_THROTTLES_LOCK = threading.Lock()


def throttle_for(settings: Settings) -> Throttle:
    """The process-wide throttle for these limits (one per distinct setting, normally exactly one)."""
    key = (settings.e2b_creates_per_s, settings.e2b_max_concurrent)
    with _THROTTLES_LOCK:
        return _THROTTLES.setdefault(key, Throttle(*key))
