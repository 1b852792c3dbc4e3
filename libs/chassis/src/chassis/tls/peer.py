"""Who a peer is: the SPIFFE-style URI its certificate names (``spiffe://astra/<part>``)."""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509

SPIFFE_PREFIX = "spiffe://astra/"


def spiffe_id_of_part(part: str) -> str:
    return f"{SPIFFE_PREFIX}{part}"


@functools.lru_cache(maxsize=256)
def spiffe_id(pem: bytes) -> str | None:
    """The first ``spiffe://`` URI SAN of a PEM certificate (None: it names none).

    Cached: a peer shows the same certificate on every call of a connection.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return str(uri)
    return None


def peer_spiffe_id(context: Any) -> str | None:
    """The SPIFFE id of the client of a server call (``grpc.ServicerContext``), if it showed one."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None
    pem = pems[0]
    return spiffe_id(pem if isinstance(pem, bytes) else str(pem).encode())
