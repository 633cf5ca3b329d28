"""Dispatchers hand pending runs to executors: in-process on the embedded default, procrastinate at scale."""
