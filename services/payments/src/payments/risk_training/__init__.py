"""Training the fraud model: a generated, labelled set of payments and the command that trains
on it (``python -m payments.risk_training.train``). Not imported by the running service."""
