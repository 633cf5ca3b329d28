"""Entry points: the HTTP API and watch page, the CLI, and the embedded and demo modes."""
