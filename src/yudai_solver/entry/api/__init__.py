"""HTTP entry layer: parse, call one domain function, return a schema."""

from yudai_solver.entry.api.app import create_app

__all__ = ["create_app"]
