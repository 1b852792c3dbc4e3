"""Events: the transactional outbox, its relay to Pub/Sub, and subscribers with an inbox."""
