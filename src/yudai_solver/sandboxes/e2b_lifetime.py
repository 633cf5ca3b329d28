"""How long an E2B sandbox is kept alive: step by step, never past the solve's time budget or the account's cap.

E2B kills a sandbox at the end of its lifetime whatever it is doing, and the lifetime is capped per account from
the sandbox's start (1 h on Hobby, 24 h on Pro). A run may last far longer than any fixed lifetime (setup 1200 s +
30 x (120 s model + 120 s command) + tests 600 s), so before each step the lifetime is moved to cover that step,
plus a chunk so that most steps need no call. A worker that dies stops extending: its sandbox ends soon after.
"""

import math
from collections.abc import Callable

from yudai_solver.sandboxes.e2b_client import E2BLifetimeExceeded

MARGIN_S = 60
"""What the client needs beyond a step's own limit: the stream's grace, the final read, the kill."""
CHUNK_S = 600
"""Extra life asked for with each extension, so a run of short commands calls `set_timeout` about every 10 min."""


class Lifetime:
    """The planned end of one sandbox's life, in the caller's monotonic seconds.

    `started` is taken before the creation call, so the cap counted from it ends no later than E2B's own.
    """

    def __init__(self, *, started: float, initial_s: float, cap_s: float, budget_s: float | None = None):
        self.cap_end = started + cap_s
        self.budget_end = started + budget_s + MARGIN_S if budget_s else math.inf
        self.end = started + min(initial_s, cap_s)
        self._started, self._cap_s = started, cap_s

    def extension(self, step_s: float, now: float) -> int | None:
        """The `set_timeout` argument (seconds from `now`) that keeps the sandbox alive through a step of `step_s`
        seconds starting now, or up to the solve's budget if that ends first (the budget stops the run then); None when
        the current lifetime already does. E2BLifetimeExceeded when the account's cap cannot cover the step."""
        needed = now + step_s + MARGIN_S
        if needed <= self.end:
            return None
        if needed > self.cap_end:
            raise E2BLifetimeExceeded(
                f"the e2b sandbox would outlive the account's lifetime cap: it has run {now - self._started:.0f} s "
                f"and the next step may take {step_s:.0f} s, past e2b_max_lifetime_s={self._cap_s:.0f} s "
                "(E2B allows 3600 s on Hobby, 86400 s on Pro; raise the setting if the account allows more)"
            )
        # Past the budget the run is stopped anyway: a sandbox its dead worker left must not outlive it.
        timeout_s = min(step_s + MARGIN_S + CHUNK_S, self.cap_end - now, self.budget_end - now)
        return math.ceil(timeout_s) if now + timeout_s > self.end else None

    def extended(self, timeout_s: int, now: float) -> None:
        """Record that `set_timeout(timeout_s)` succeeded at `now`."""
        self.end = now + timeout_s


def keep_alive(lifetime: Lifetime, step_s: float, now: float, set_timeout: Callable[[int], None]) -> None:
    """Extend the lifetime through the next step if it needs it (one `set_timeout` call)."""
    timeout_s = lifetime.extension(step_s, now)
    if timeout_s is not None:
        set_timeout(timeout_s)
        lifetime.extended(timeout_s, now)
