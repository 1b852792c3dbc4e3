from tests.ledger_fixtures import clock, ledger, ledger_db_url, ledger_stub

__all__ = ["clock", "ledger", "ledger_db_url", "ledger_stub"]
