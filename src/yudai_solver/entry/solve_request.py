"""The body of `POST /sessions/{id}/solve/start` (`schemas.SolveStart`) from `yudai solve`'s options."""

from dataclasses import dataclass, field
from typing import Any

EXPERIMENT_FORM = "MODEL[:TEMP[:STRATEGY[:MAX_EDITS]]]"


class BadOption(ValueError):
    """An option the API would refuse, said before anything is sent; `option` names it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class SolveOptions:
    """What `yudai solve` was given, as given (None: left out, the API's default applies)."""

    repo: str
    base_branch: str
    issue: int | None = None
    issue_title: str | None = None
    issue_body: str | None = None
    models: list[str] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    evolutions: list[str] = field(default_factory=list)
    max_edits: int | None = None
    experiments: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    setup_command: str | None = None
    test_command: str | None = None
    test_paths: list[str] = field(default_factory=list)
    create_pr: bool = False
    allow_closed: bool = False


def solve_body(options: SolveOptions) -> dict[str, Any]:
    """The request body; BadOption for a combination the API would refuse (or would read wrongly)."""
    body: dict[str, Any] = {
        "repo_url": options.repo,
        "issue_number": _issue_number(options),
        "base_branch": options.base_branch,
        "issue_title": options.issue_title,
        "issue_body": options.issue_body if options.issue_title else None,
        "matrix": matrix(options),
        "limits": {key: value for key, value in options.limits.items() if value is not None and value is not False},
        "setup_command": options.setup_command,
        "test_command": options.test_command,
        "test_paths": options.test_paths or None,
        "create_pr": options.create_pr or None,
        "allow_closed": options.allow_closed or None,
    }
    return {key: value for key, value in body.items() if value is not None}


def _issue_number(options: SolveOptions) -> int:
    if options.issue is not None:
        return options.issue
    if options.issue_title is None:
        raise BadOption("--issue", "give --issue N (the tracker's issue), or --issue-title (and --issue-body)")
    if options.create_pr and options.repo.startswith("https://"):
        raise BadOption("--issue", "a pull request says which issue it fixes: give --issue N with --create-pr")
    return 1  # the API needs a number; a solve from a title alone is recorded as #1 (nothing refers to it)


def matrix(options: SolveOptions) -> dict[str, Any]:
    """Explicit experiments, or the cross product of models x temperatures x evolutions (not both)."""
    compact = bool(options.models or options.temperatures or options.evolutions or options.max_edits)
    if options.experiments and compact:
        raise BadOption(
            "--experiment", "give --experiment, or --model (with --temperature/--evolution/--max-edits), not both"
        )
    if options.experiments:
        return {"experiments": [parse_experiment(spec) for spec in options.experiments]}
    if not options.models:
        raise BadOption("--model", f"give --model NAME (repeatable), or --experiment {EXPERIMENT_FORM}")
    cells: dict[str, Any] = {
        "models": options.models,
        "temperatures": options.temperatures or None,
        "evolutions": options.evolutions or None,
        "max_edits": options.max_edits,
    }
    return {key: value for key, value in cells.items() if value is not None}


def parse_experiment(spec: str) -> dict[str, Any]:
    """`MODEL[:TEMP[:STRATEGY[:MAX_EDITS]]]` as one matrix experiment; an empty part takes the API's default."""
    parts = spec.split(":")
    if len(parts) > 4 or not parts[0]:
        raise BadOption("--experiment", f"{spec!r} is not {EXPERIMENT_FORM}")
    model, temperature, evolution, max_edits = [*parts, "", "", ""][:4]
    experiment: dict[str, Any] = {"model": model, "temperature": _number(float, temperature, spec, "TEMP") or 0.0}
    if evolution:
        experiment["evolution"] = evolution
    if max_edits:
        experiment["max_edits"] = _number(int, max_edits, spec, "MAX_EDITS")
    return experiment


def _number(kind: type[float] | type[int], text: str, spec: str, part: str) -> float | int | None:
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise BadOption("--experiment", f"{part} of {spec!r} is not a number ({EXPERIMENT_FORM})") from None
