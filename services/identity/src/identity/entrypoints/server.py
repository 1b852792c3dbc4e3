"""``astra-identity``: serve identity over gRPC, apply its migrations, or administer it.

Commands:
  serve               (default) serve IdentityService
  migrate             apply the database migrations
  register-client ID  register a service client and print its secret once (JSON on stdout)
  rotate-signing-key  sign with a new key from now on
  rescreen-sanctions  screen PENDING_REVIEW and VERIFIED customers against
                      IDENTITY_SANCTIONS_LIST_FILE now (the server does it at start)
  generate-kek        write a new key-encryption key file (IDENTITY_KEY_ENCRYPTION_KEY_FILE)
"""

from __future__ import annotations

import threading

from astra.identity.v1 import identity_pb2, identity_pb2_grpc
from chassis.background import Periodic
from chassis.service import Background, ServiceWiring

from identity.bootstrap import ERROR_DOMAIN, Identity, bootstrap, migrate
from identity.config import IdentitySettings
from identity.entrypoints.admin import COMMANDS, rescreen_all
from identity.entrypoints.grpc_api import IdentityServicer


def background(identity: Identity, _settings: IdentitySettings) -> Background:
    """With a sanctions list: the customers screened against it once at start (tried again
    every half minute until it has run once); a new version holds those it matches."""
    if identity.deps.screener is None:
        return Background()
    done = threading.Event()

    def tick() -> None:
        if not done.is_set():
            rescreen_all(identity.deps)
            done.set()

    return Background(
        before_server=[Periodic("identity-sanctions-rescreen", tick, 30.0, at_start=True)]
    )


SERVICE = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"]

IDENTITY: ServiceWiring[IdentitySettings, Identity] = ServiceWiring(
    name="identity",
    module="identity.entrypoints.server",
    description=__doc__ or "",
    settings=IdentitySettings,
    migrate=migrate,
    bootstrap=bootstrap,
    service=SERVICE,
    add_servicer=lambda identity, server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(
        IdentityServicer(identity), server
    ),
    error_domain=ERROR_DOMAIN,
    # Identity checks the tokens sent to it with its own key set, read locally.
    verifier=lambda identity, _settings: identity.verifier,
    commands=COMMANDS,
    workers=background,
)

build_server = IDENTITY.build_server
main = IDENTITY.main

if __name__ == "__main__":
    main()
