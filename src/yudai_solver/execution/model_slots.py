"""A model's `max_concurrency` across processes: the workers that share one PostgreSQL queue share its slots.

Slot i of a model (its litellm name and its server) is a PostgreSQL session-level advisory lock whose key hashes
(name, server, i). A request takes a free slot on a connection of its own and holds it until the request ends;
ending the connection lets go of the lock, so a worker that dies (or loses its database) frees its slots with it.
A SQLite database has one process by design: its process-wide gate (`model_gate.Gate`) is enough.
"""

import hashlib
import threading
from collections.abc import Callable

from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

POLL_S = 0.1
"""How often a request waiting for another process's slot tries again."""
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")


def slot_key(model_name: str, endpoint: str, slot: int) -> int:
    """The advisory lock key (a signed 64-bit integer) of slot `slot` of the model `model_name` at `endpoint`."""
    digest = hashlib.blake2b(f"yudai-model-slot\0{model_name}\0{endpoint}\0{slot}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class SharedSlots:
    """The model slots of every process using one PostgreSQL database (see the module)."""

    def __init__(self, url: URL) -> None:
        # Connections of their own, never pooled: closing one is what lets go of its slot.
        self._engine = create_engine(url, poolclass=NullPool)

    def acquire(self, model_name: str, endpoint: str, limit: int, cancel: threading.Event) -> Callable[[], None] | None:
        """Wait for one of the model's `limit` slots; the function that frees it, or None if `cancel` came first."""
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        keys = [slot_key(model_name, endpoint, slot) for slot in range(limit)]
        try:
            while not cancel.is_set():
                if any(connection.execute(_TRY_LOCK, {"key": key}).scalar() for key in keys):
                    return connection.close
                cancel.wait(POLL_S)
        except BaseException:
            connection.close()
            raise
        connection.close()
        return None


_shared: dict[str, SharedSlots] = {}
_shared_lock = threading.Lock()


def shared_slots(factory: sessionmaker[Session]) -> SharedSlots | None:
    """The slots shared by the processes using `factory`'s database: None unless it is PostgreSQL."""
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return None
    key = engine.url.render_as_string(hide_password=False)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SharedSlots(engine.url)
        return _shared[key]
