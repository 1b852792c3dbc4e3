"""``<service> generate-kek --out FILE``: the operator's command that makes a KEK file
(``chassis.pii``), shared by the services that keep a key-encryption key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chassis.pii import write_key_encryption_key_file
from chassis.service import Command


def generate_kek_command() -> Command[Any]:
    """``<service> generate-kek --out FILE``: the operator's command that makes a KEK file."""

    def run(args: argparse.Namespace, _settings: Any) -> None:
        path = Path(args.out)
        if path.exists():
            if args.if_missing:
                return
            raise SystemExit(f"{path} exists; not overwriting a key-encryption key")
        write_key_encryption_key_file(path)
        print(f"key-encryption key written to {path}", file=sys.stderr)

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", required=True, help="file to create (mode 0600)")
        parser.add_argument(
            "--if-missing", action="store_true", help="do nothing if the file exists"
        )

    return Command("generate-kek", "write a new key-encryption key file", run, arguments)
