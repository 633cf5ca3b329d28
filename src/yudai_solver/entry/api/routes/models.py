from fastapi import APIRouter, Response

from yudai_solver.base.models import AIModel
from yudai_solver.base.schemas import ModelCreate, ModelOut, ModelUpdate
from yudai_solver.entry.api.deps import AdminUser, CurrentUser, DbDep, RowId
from yudai_solver.solving import ai_models

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=201, response_model=ModelOut)
def add_model(body: ModelCreate, db: DbDep, _: AdminUser) -> AIModel:
    row = ai_models.add_model(db, body)
    db.commit()
    return row


@router.get("", response_model=list[ModelOut])
def list_models(db: DbDep, _: CurrentUser) -> list[AIModel]:
    return ai_models.list_models(db)


@router.patch("/{model_id}", response_model=ModelOut)
def update_model(model_id: RowId, body: ModelUpdate, db: DbDep, _: AdminUser) -> AIModel:
    """Changes the fields given; `config` is a JSON merge patch (RFC 7396) of the stored one: `{"config":
    {"input_cost_per_token": 1e-7}}` keeps its `api_base`, `{"config": {"api_key_env": null}}` removes one key."""
    row = ai_models.update_model(db, model_id, body)
    db.commit()
    return row


@router.delete("/{model_id}", response_model=ModelOut | None)
def remove_model(model_id: RowId, db: DbDep, _: AdminUser) -> AIModel | Response:
    """Deletes the model (204), or deactivates it (200, the row) when runs refer to it."""
    row = ai_models.remove_model(db, model_id)
    db.commit()
    return row if row is not None else Response(status_code=204)
