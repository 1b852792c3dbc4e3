"""Harness for tests and benchmarks: real PostgreSQL, the real Pub/Sub emulator, real processes.

Nothing here mocks a dependency: a part that cannot be found is an error with a
message saying how to provide it, never a silent skip.
"""
