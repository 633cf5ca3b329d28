"""Pick the dispatcher for a deployment."""

from sqlalchemy.orm import Session, sessionmaker

from ..settings import Settings
from .inprocess import InProcessDispatcher
from .protocol import Dispatcher


def create_dispatcher(settings: Settings, session_factory: sessionmaker[Session]) -> Dispatcher:
    return InProcessDispatcher(settings, session_factory)
