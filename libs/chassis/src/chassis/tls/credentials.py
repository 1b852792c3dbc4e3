"""Credentials of servers and channels, from certificate files that may be replaced at any time."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

_log = structlog.get_logger("chassis.tls")

# What a file is, as far as noticing a replacement goes (a renamed-in file has a new inode).
_Stamp = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A part's certificate (PEM, leaf first), its key, and the CA every peer must chain to."""

    cert_file: str
    key_file: str
    ca_file: str

    def paths(self) -> tuple[str, str, str]:
        return (self.cert_file, self.key_file, self.ca_file)

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Certificate chain, key and CA, as bytes (read now: a rotation shows in the next read)."""
        with open(self.cert_file, "rb") as cert, open(self.key_file, "rb") as key:
            chain, private = cert.read(), key.read()
        with open(self.ca_file, "rb") as ca:
            return chain, private, ca.read()


def files_stamp(files: TlsFiles) -> _Stamp:
    """What the files are, as far as noticing a replacement goes."""
    stamps = []
    for path in files.paths():
        stat = os.stat(path)
        stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(stamps)


def check_pair(chain: bytes, key: bytes, ca: bytes) -> x509.Certificate:
    """The leaf of ``chain``, once it is known to match ``key`` and to be signed by ``ca``.

    A replacement caught half-way (new certificate, old key) fails here, and the
    credentials in use stay.
    """
    leaf = x509.load_pem_x509_certificate(chain)
    private = serialization.load_pem_private_key(key, password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if leaf.public_key().public_bytes(der, public) != private.public_key().public_bytes(
        der, public
    ):
        raise ValueError("the certificate does not match the key")
    authorities = x509.load_pem_x509_certificates(ca)
    for authority in authorities:
        try:
            leaf.verify_directly_issued_by(authority)
            return leaf
        except (InvalidSignature, ValueError, TypeError):
            continue
    raise ValueError("the certificate is not signed by the CA file's certificate")


class ReloadingCertificates:
    """The certificate configuration fetcher of ``grpc.dynamic_ssl_server_credentials``.

    gRPC calls it before each handshake; it answers None (keep what you have)
    unless the files changed (size, mtime or inode) and now hold a different,
    consistent certificate, key and CA. Connections already open keep the
    certificate they were made with; new ones get the new one.
    """

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files_stamp(self._files)
        self._contents = files.read()
        self.certificate = check_pair(*self._contents)
        self.reloads = 0

    def initial(self) -> Any:
        return _configuration(self._contents)

    def __call__(self) -> Any:
        try:
            stamp = files_stamp(self._files)
        except OSError:
            return None  # a file is being replaced: keep serving what we have
        if stamp == self._stamp:
            return None
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                contents = self._files.read()
                certificate = check_pair(*contents)
            except Exception as error:  # half-replaced or bad files: retried on the next handshake
                _log.warning("tls files not reloaded", error=str(error))
                return None
            self._stamp = stamp
            if contents == self._contents:
                return None
            self._contents = contents
            self.certificate = certificate
            self.reloads += 1
            _log.info(
                "tls certificate reloaded",
                serial=format(certificate.serial_number, "x"),
                not_after=certificate.not_valid_after_utc.isoformat(),
            )
            return _configuration(contents)


def _configuration(contents: tuple[bytes, bytes, bytes]) -> Any:
    chain, key, ca = contents
    return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Mutual TLS: every client shows a certificate of the CA; files re-read when they change."""
    fetcher = ReloadingCertificates(files)
    return grpc.dynamic_ssl_server_credentials(
        fetcher.initial(), fetcher, require_client_authentication=True
    )


def channel_credentials(contents: tuple[bytes, bytes, bytes]) -> grpc.ChannelCredentials:
    """A client's credentials from what ``TlsFiles.read`` returned: its certificate for the
    server to check, the CA to check the server's (the one place they are built)."""
    chain, key, ca = contents
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=chain
    )
