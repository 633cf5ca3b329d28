"""Running one attempt: its workspace, its agent, its validation."""
