"""Validate and expand a solve's experiment matrix into concrete experiments."""

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.models import AIModel
from yudai_solver.base.schemas import Matrix

AUTO_STRATEGY = "reproduce-first"
"""Used instead of `baseline` when the untouched checkout has no failing test (or no test command)."""
EVOLUTIONS = ("baseline", "minimal-fix", "test-first", AUTO_STRATEGY)
DEFAULT_EVOLUTION = "baseline"
DEFAULT_TEMPERATURE = 0.0


@dataclass(frozen=True)
class Experiment:
    run_id: str
    model: str
    temperature: float
    max_edits: int
    evolution: str
    extra: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "run_id": self.run_id,
            "model": self.model,
            "temperature": self.temperature,
            "max_edits": self.max_edits,
            "evolution": self.evolution,
        }


def expand(matrix: Matrix, *, default_max_edits: int, max_experiments: int) -> list[Experiment]:
    """The matrix as a list of experiments, each with a fresh run id; refuses empty or oversized matrices."""
    cells = _cells(matrix, default_max_edits)
    if not cells:
        raise InvalidInput("the matrix holds no experiment", field="matrix")
    if len(cells) > max_experiments:
        raise InvalidInput(f"the matrix holds {len(cells)} experiments; the limit is {max_experiments}", field="matrix")
    for index, cell in enumerate(cells):
        if cell["evolution"] not in EVOLUTIONS:
            raise InvalidInput(
                f"unknown evolution {cell['evolution']!r}; known: {', '.join(EVOLUTIONS)}",
                field=_field(matrix, index, "evolution"),
            )
    return [_experiment(cell) for cell in cells]


def _cells(matrix: Matrix, default_max_edits: int) -> list[dict[str, Any]]:
    if matrix.experiments is not None:
        return [
            {
                **(e.model_extra or {}),  # never None: Experiment allows extra keys
                "model": e.model,
                "temperature": e.temperature,
                "max_edits": e.max_edits or default_max_edits,
                "evolution": e.evolution or DEFAULT_EVOLUTION,
            }
            for e in matrix.experiments
        ]
    product = itertools.product(
        matrix.models or [],
        matrix.temperatures or [DEFAULT_TEMPERATURE],
        matrix.evolutions or [DEFAULT_EVOLUTION],
    )
    max_edits = matrix.max_edits or default_max_edits
    return [{"model": m, "temperature": t, "max_edits": max_edits, "evolution": e} for m, t, e in product]


def _experiment(cell: dict[str, Any]) -> Experiment:
    known = {"model", "temperature", "max_edits", "evolution", "run_id"}
    extra = {k: v for k, v in cell.items() if k not in known}
    return Experiment(uuid.uuid4().hex, cell["model"], cell["temperature"], cell["max_edits"], cell["evolution"], extra)


def _field(matrix: Matrix, index: int, name: str) -> str:
    if matrix.experiments is not None:
        return f"matrix.experiments[{index}].{name}"
    return "matrix.evolutions" if name == "evolution" else f"matrix.{name}s"


def resolve_models(session: Session, matrix: Matrix, experiments: list[Experiment]) -> dict[str, AIModel]:
    """Map each experiment's model reference (a name or a model_id) to an active ai_models row."""
    wanted = {e.model for e in experiments}
    rows = session.scalars(
        select(AIModel).where(AIModel.is_active.is_(True), or_(AIModel.name.in_(wanted), AIModel.model_id.in_(wanted)))
    ).all()
    found = {key: row for row in rows for key in (row.model_id, row.name)}
    for index, experiment in enumerate(experiments):
        if experiment.model not in found:
            available = session.scalars(select(AIModel.name).where(AIModel.is_active.is_(True))).all()
            raise InvalidInput(
                f"no active model named {experiment.model!r}; available: {', '.join(sorted(available)) or 'none'}",
                field=_model_field(matrix, index),
            )
    return found


def resolve_model(session: Session, reference: str, *, field: str) -> AIModel:
    """The active ai_models row named `reference` (a name or a model_id); InvalidInput naming `field` otherwise."""
    row = session.scalars(
        select(AIModel).where(
            AIModel.is_active.is_(True), or_(AIModel.name == reference, AIModel.model_id == reference)
        )
    ).first()
    if row is None:
        available = session.scalars(select(AIModel.name).where(AIModel.is_active.is_(True))).all()
        raise InvalidInput(
            f"no active model named {reference!r}; available: {', '.join(sorted(available)) or 'none'}", field=field
        )
    return row


def _model_field(matrix: Matrix, index: int) -> str:
    return f"matrix.experiments[{index}].model" if matrix.experiments is not None else "matrix.models"
