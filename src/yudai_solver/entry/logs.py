"""Logging for the processes the CLI starts: lines for a terminal, or one JSON object per line for a log collector
(`YUDAI_LOG_FORMAT=json`). Every logger ends at the root handler, the libraries' (procrastinate, uvicorn) included,
so a JSON log has no plain line in it."""

import logging
from typing import Any

import structlog

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """One handler on the root logger, on stderr; `json` lines carry timestamp, level, logger, event and, for a
    failure, the exception with its traceback."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def json_formatter() -> logging.Formatter:
    """structlog's formatter for standard-library records: each record as one JSON object."""
    stamped: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=stamped,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """For `uvicorn.run(log_config=...)` after `configure_logging`: uvicorn's loggers then go to the root handler
    (JSON), or uvicorn keeps its own lines (text)."""
    from uvicorn.config import LOGGING_CONFIG  # lazily: only the commands that serve need uvicorn

    if log_format != "json":
        return LOGGING_CONFIG
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {"uvicorn": quiet, "uvicorn.error": quiet, "uvicorn.access": quiet},
    }
