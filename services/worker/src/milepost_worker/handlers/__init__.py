"""Async, idempotent work behind the tasks; callable in-process with a WorkerContext."""
