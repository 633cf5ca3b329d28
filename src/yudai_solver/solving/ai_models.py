"""The shared model catalogue. API keys never live here: workers read them from their own environment."""

from typing import Any

from pydantic import ValidationError
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import Conflict, InvalidInput, NotFound
from yudai_solver.base.models import AIModel, SolveRun
from yudai_solver.base.schemas import ModelConfig, ModelCreate, ModelUpdate


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
        # A merge patch of the stored config, so a price-only PATCH keeps the model's api_base; `config: null` empties.
        document = patch.config.model_dump(exclude_unset=True) if patch.config else None
        changes["config"] = _valid_config(merge_patch(row.config or {}, document))
    for key, value in changes.items():
        setattr(row, key, value)
    session.flush()
    return row


def find_model(session: Session, name: str) -> AIModel:
    """The model named `name` (the CLI's handle on a model; the API uses ids)."""
    row = session.scalar(select(AIModel).where(AIModel.name == name))
    if row is None:
        raise NotFound(f"no model named {name!r}", field="name")
    return row


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: an object merges key by key (recursively), null removes a key, anything else
    replaces. Returns a new value; neither argument is changed."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _valid_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        return ModelConfig.model_validate(config).model_dump(exclude_none=True)
    except ValidationError as exc:  # the merged config breaks a rule of its own (a stored value no longer valid)
        error = exc.errors()[0]
        place = ".".join(str(part) for part in error["loc"])
        raise InvalidInput(f"config{'.' + place if place else ''}: {error['msg']}", field="config") from None


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
