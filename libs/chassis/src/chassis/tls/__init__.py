"""Mutual TLS for every gRPC server and channel of the suite.

- ``TlsFiles``: a certificate, its key and the CA that signs every part, named by
  settings (``<PREFIX>_TLS_CERT_FILE``, ``_KEY_FILE``, ``_CA_FILE``);
- ``server_credentials``: credentials that ask every client for a certificate of
  the CA and read the files again when they change (no restart on rotation);
- ``channel_credentials`` / ``secure_channel``: the one place a client's
  credentials are built;
- ``spiffe_id``: the SPIFFE-style URI (``spiffe://astra/<part>``) a certificate
  names, which is who the peer is;
- ``chassis.tls.devca``: a development CA and one certificate per part.
"""

from chassis.tls.credentials import (
    ReloadingCertificates,
    TlsFiles,
    channel_credentials,
    secure_channel,
    server_credentials,
)
from chassis.tls.peer import SPIFFE_PREFIX, peer_spiffe_id, spiffe_id, spiffe_id_of_part

__all__ = [
    "SPIFFE_PREFIX",
    "ReloadingCertificates",
    "TlsFiles",
    "channel_credentials",
    "peer_spiffe_id",
    "secure_channel",
    "server_credentials",
    "spiffe_id",
    "spiffe_id_of_part",
]
