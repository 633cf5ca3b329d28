"""The edge between the `e2b` SDK and this package: the SDK class (swapped by tests), and its errors translated.

What a failure means is decided here, once: the sandbox gone or unreachable is `E2BSandboxLost` (an
infrastructure failure of the run, never a test result); after our own `kill()` anything is `SandboxKilled`;
everything else is an `E2BError` naming the SDK's exception.
"""

from typing import TYPE_CHECKING

from yudai_solver.base.errors import YudaiError
from yudai_solver.sandboxes.protocol import SandboxKilled, SandboxLost

if TYPE_CHECKING:
    import e2b


class E2BError(YudaiError):
    """The E2B service or a sandbox of it failed."""


class E2BSandboxLost(E2BError, SandboxLost):
    """The E2B sandbox died or could not be reached (killed by E2B, out of lifetime, network lost)."""


class E2BLifetimeExceeded(E2BSandboxLost):
    """The sandbox's lifetime cannot cover the next step: E2B would kill it midway."""


def sdk() -> "type[e2b.Sandbox]":
    """The SDK's `Sandbox` class (imported on first use); tests replace this function to inject a fake."""
    from e2b import Sandbox

    return Sandbox


def translate(exc: Exception, *, sandbox_id: str, killed: bool) -> YudaiError:
    """The error to raise for an SDK exception met while using sandbox `sandbox_id`.

    The SDK reports a dead sandbox in several shapes (e2b/exceptions.py, e2b/envd/rpc.py): `SandboxNotRunning` or
    `SandboxUnreachable` (both `TimeoutException`s), a plain `TimeoutException` when the stream is CANCELED as the
    sandbox shuts down, `SandboxNotFoundException` from the control plane, and a bare `Exception` when a command's
    stream closes without its end event. A deadline of our own is not translated here (the caller knows it).
    """
    from e2b import SandboxNotFoundException, TimeoutException

    if killed:
        return SandboxKilled()
    if isinstance(exc, YudaiError):
        return exc
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutException | SandboxNotFoundException) or type(exc) is Exception:
        return E2BSandboxLost(f"e2b sandbox {sandbox_id} is gone or unreachable ({detail})")
    return E2BError(f"e2b: {detail}")
