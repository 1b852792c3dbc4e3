"""Database plumbing: engines, the unit of work, conflict retries and migrations."""
