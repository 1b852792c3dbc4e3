"""``astra-sandbox-bank``: run the sandbox bank's HTTP server (uvicorn)."""

from __future__ import annotations

import argparse

import structlog
import uvicorn
from chassis.http_signatures import load_key
from chassis.logging import configure_logging

from sandbox_bank.app import create_app
from sandbox_bank.config import BankSettings, FaultSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="astra-sandbox-bank", description=__doc__)
    # Optional, as for the other services: their image's default command is `serve`.
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    settings = BankSettings()
    configure_logging("sandbox-bank", settings.log_level)
    faults = FaultSettings()
    try:
        key = load_key(
            settings.signing_key_id,
            settings.signing_key.get_secret_value(),
            settings.signing_key_file,
            setting="SANDBOX_BANK_SIGNING_KEY",
        )
    except ValueError as error:
        parser.error(str(error))
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        parser.error("SANDBOX_BANK_TLS_CERT_FILE and SANDBOX_BANK_TLS_KEY_FILE go together")
    structlog.get_logger("sandbox_bank").info(
        "sandbox bank starting",
        address=f"{settings.host}:{settings.port}",
        tls=bool(settings.tls_cert_file),
        key_id=key.key_id,
        database=settings.database,
        settlement_delay_seconds=settings.settlement_delay_seconds,
        **faults.model_dump(),
    )
    uvicorn.run(
        create_app(settings, key, faults),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging, configured above
        access_log=False,
        ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None,
        # Long polls and hung requests must not hold a restart back for long.
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
