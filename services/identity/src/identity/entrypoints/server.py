"""``astra-identity``: serve identity over gRPC, apply its migrations, or administer it.

Commands:
  serve               (default) serve IdentityService
  migrate             apply the database migrations
  register-client ID  register a service client and print its secret once (JSON on stdout)
  rotate-signing-key  sign with a new key from now on
  generate-kek        write a new key-encryption key file (IDENTITY_KEY_ENCRYPTION_KEY_FILE)
"""

from __future__ import annotations

from astra.identity.v1 import identity_pb2, identity_pb2_grpc
from chassis.service import ServiceWiring

from identity.bootstrap import ERROR_DOMAIN, Identity, bootstrap, migrate
from identity.config import IdentitySettings
from identity.entrypoints.admin import COMMANDS
from identity.entrypoints.grpc_api import IdentityServicer

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
)

build_server = IDENTITY.build_server
main = IDENTITY.main

if __name__ == "__main__":
    main()
