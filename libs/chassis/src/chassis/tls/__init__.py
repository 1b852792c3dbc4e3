"""Mutual TLS for every gRPC server and channel of the suite.

- ``TlsFiles``: a certificate, its key and the CA that signs every part, named by
  settings (``<PREFIX>_TLS_CERT_FILE``, ``_KEY_FILE``, ``_CA_FILE``);
- ``server_credentials``: credentials that ask every client for a certificate of
  the CA and read the files again when they change (no restart on rotation);
- ``secure_channel``: the one way a client dials, a ``ReloadingChannel`` that
  follows its files too (``channel_credentials`` builds its credentials);
- ``spiffe_id``: the SPIFFE-style URI (``spiffe://astra/<part>``) a certificate
  names, which is who the peer is;
- ``chassis.tls.devca``: a development CA and one certificate per part.
"""

from chassis.tls.channel import ReloadingChannel, secure_channel
from chassis.tls.credentials import (
    ReloadingCertificates,
    TlsFiles,
    channel_credentials,
    server_credentials,
)
from chassis.tls.peer import SPIFFE_PREFIX, peer_spiffe_id, spiffe_id, spiffe_id_of_part

__all__ = [
    "SPIFFE_PREFIX",
    "ReloadingCertificates",
    "ReloadingChannel",
    "TlsFiles",
    "channel_credentials",
    "peer_spiffe_id",
    "secure_channel",
    "server_credentials",
    "spiffe_id",
    "spiffe_id_of_part",
]
