"""The base layer: settings, errors, the database and its models, API schemas, statuses, git."""
