"""Identity's operator commands: register a client, rotate the signing key, make a KEK,
erase a customer.

Each prints its result (JSON on stdout) and logs warnings only.
"""

from __future__ import annotations

import argparse
import json

from chassis.auth import declared_scopes
from chassis.kek_command import generate_kek_command
from chassis.kernel.errors import AlreadyExists
from chassis.kernel.ids import new_id
from chassis.service import Command

from identity.bootstrap import bootstrap
from identity.config import IdentitySettings
from identity.domain.model import ClientSpec
from identity.service_layer import use_cases


def register_client(args: argparse.Namespace, settings: IdentitySettings) -> None:
    if args.all_scopes and args.scope:
        raise SystemExit("give --scope or --all-scopes, not both")
    if args.all_scopes and settings.environment != "development":
        raise SystemExit(
            "--all-scopes is for development only (IDENTITY_ENVIRONMENT=development); "
            "name each scope with --scope"
        )
    identity = bootstrap(settings)
    try:
        # No scope named, none granted: "everything" is never a default.
        scopes = tuple(sorted(declared_scopes())) if args.all_scopes else tuple(args.scope or ())
        spec = ClientSpec(args.client_id, args.name or args.client_id, scopes)
        try:
            client, secret = use_cases.register_client(identity.deps, spec)
        except AlreadyExists:
            if not args.reset_secret:
                raise
            client, secret = use_cases.get_client(identity.deps, spec.id), ""
        if not secret and args.reset_secret:
            secret = use_cases.reset_client_secret(identity.deps, spec.id)
        out = {"client_id": client.id, "scopes": list(client.allowed_scopes)}
        if secret:
            out["client_secret"] = secret
        else:
            out["note"] = "client already registered; its secret is not shown again"
        print(json.dumps(out), flush=True)
    finally:
        identity.close()


def _register_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client_id", help='e.g. "cli_dev"')
    parser.add_argument("--name", default="", help="display name (default: the id)")
    parser.add_argument("--scope", action="append", help="an allowed scope (repeat); default: none")
    parser.add_argument(
        "--all-scopes",
        action="store_true",
        help="allow every scope (only with IDENTITY_ENVIRONMENT=development)",
    )
    parser.add_argument(
        "--reset-secret",
        action="store_true",
        help="if the client exists, give it a new secret and print it",
    )


def rotate_signing_key(_args: argparse.Namespace, settings: IdentitySettings) -> None:
    identity = bootstrap(settings)
    try:
        rotation = use_cases.rotate_signing_key(identity.deps, new_id("rot"))
        print(json.dumps({"kid": rotation.key.kid}), flush=True)
    finally:
        identity.close()


def rescreen_all(deps: use_cases.Deps) -> int:
    """Every PENDING_REVIEW and VERIFIED customer screened against the loaded list, batch by
    batch; how many changed."""
    changed = 0
    for status in use_cases.SCREENED_STATUSES:
        after: str | None = None
        while True:
            batch = use_cases.rescreen_customers(deps, status, after)
            changed += batch.changed
            if batch.next_after is None:
                break
            after = batch.next_after
    return changed


def rescreen_sanctions(_args: argparse.Namespace, settings: IdentitySettings) -> None:
    """Screen customers against the list file as it is now (the server does it at start)."""
    identity = bootstrap(settings)
    try:
        screener = identity.deps.screener
        if screener is None:
            raise SystemExit("IDENTITY_SANCTIONS_LIST_FILE is empty: screening is off")
        changed = rescreen_all(identity.deps)
        print(json.dumps({"list_version": screener.version, "customers_changed": changed}))
    finally:
        identity.close()


COMMANDS: list[Command[IdentitySettings]] = [
    Command(
        "register-client",
        "register a service client",
        register_client,
        _register_client_arguments,
    ),
    Command("rotate-signing-key", "sign with a new key from now on", rotate_signing_key),
    Command(
        "rescreen-sanctions",
        "screen customers against the sanctions list file now",
        rescreen_sanctions,
    ),
    generate_kek_command(),
]
