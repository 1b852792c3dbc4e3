"""The shared kernel: pure Python that every domain may import.

Nothing under ``chassis.kernel`` may import gRPC, protobuf, SQLAlchemy or Pub/Sub
(a unit test enforces it), so domains stay pure while sharing one vocabulary for
errors, money and identifiers.
"""
