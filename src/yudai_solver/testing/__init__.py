"""Stand-ins for external services (a scripted model server) used by tests, benchmarks and the demo."""
