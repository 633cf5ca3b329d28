"""The shared model catalogue. API keys never live here: workers read them from their own environment."""

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import Conflict, NotFound
from yudai_solver.base.models import AIModel, SolveRun
from yudai_solver.base.schemas import ModelCreate, ModelUpdate


def add_model(session: Session, spec: ModelCreate) -> AIModel:
    _ensure_name_free(session, spec.name)
    row = AIModel(
        name=spec.name,
        provider=spec.provider,
        model_id=spec.model_id,
        config=spec.config.model_dump(exclude_none=True),
        is_active=spec.is_active,
    )
    session.add(row)
    session.flush()
    return row


def list_models(session: Session) -> list[AIModel]:
    return list(session.scalars(select(AIModel).order_by(AIModel.id)))


def update_model(session: Session, model_id: int, patch: ModelUpdate) -> AIModel:
    row = _get(session, model_id)
    changes = patch.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] != row.name:
        _ensure_name_free(session, changes["name"])
    if "config" in changes:
        changes["config"] = patch.config.model_dump(exclude_none=True) if patch.config else {}
    for key, value in changes.items():
        setattr(row, key, value)
    session.flush()
    return row


def remove_model(session: Session, model_id: int) -> AIModel | None:
    """Delete a model, or only deactivate it when runs refer to it (their history must keep its name)."""
    row = _get(session, model_id)
    if session.scalar(select(exists().where(SolveRun.model == row.name))):
        row.is_active = False
        session.flush()
        return row
    session.delete(row)
    session.flush()
    return None


def _get(session: Session, model_id: int) -> AIModel:
    row = session.get(AIModel, model_id)
    if row is None:
        raise NotFound(f"model {model_id} not found", field="model_id")
    return row


def _ensure_name_free(session: Session, name: str) -> None:
    if session.scalar(select(AIModel.id).where(AIModel.name == name)) is not None:
        raise Conflict(f"a model named {name!r} exists already", field="name")
