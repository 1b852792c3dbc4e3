"""The transactional outbox: events written with the state change, published later by a relay."""
