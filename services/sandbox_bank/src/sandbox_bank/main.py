"""``astra-sandbox-bank``: run the sandbox bank's HTTP server (uvicorn)."""

from __future__ import annotations

import argparse

import structlog
import uvicorn
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
    structlog.get_logger("sandbox_bank").info(
        "sandbox bank starting",
        address=f"{settings.host}:{settings.port}",
        database=settings.database,
        settlement_delay_seconds=settings.settlement_delay_seconds,
        **faults.model_dump(),
    )
    uvicorn.run(
        create_app(settings, faults),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging, configured above
        access_log=False,
        # Long polls and hung requests must not hold a restart back for long.
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
