"""A development CA and one certificate per part of the suite (``make run``, the tests).

``python -m chassis.tls.devca FOLDER`` writes, with the ``cryptography`` library:
``ca.pem``/``ca-key.pem``; ``<part>.pem``/``<part>-key.pem`` for every part
(URI SAN ``spiffe://astra/<part>``, DNS SANs ``<part>`` and ``localhost``, IP SAN
``127.0.0.1``: each serves, and calls others); ``client.pem``/``client-key.pem``
for a developer's tools (grpcurl). EC P-256 keys. Files that are still valid
(readable, matching their key, signed by the CA, not close to expiry) are kept,
so running it again changes nothing; a new CA reissues every certificate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chassis.tls.credentials import TlsFiles, check_pair
from chassis.tls.peer import spiffe_id_of_part

# Every part that serves or calls over gRPC; "client" is the developer's.
PARTS = ("identity", "ledger", "payments", "relay", "bank")
CLIENT = "client"
CA_DAYS = 3650
LEAF_DAYS = 365
# A certificate this close to its end is issued again.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class DevCa:
    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.folder / "ca-key.pem"

    def files(self, part: str) -> TlsFiles:
        """The certificate, key and CA files of ``part`` (or ``client``)."""
        return TlsFiles(
            str(self.folder / f"{part}.pem"),
            str(self.folder / f"{part}-key.pem"),
            str(self.ca_file),
        )

    @property
    def client(self) -> TlsFiles:
        return self.files(CLIENT)

    def env(self, prefix: str, part: str) -> dict[str, str]:
        """``<PREFIX>_TLS_*`` settings that give a process ``part``'s certificate."""
        files = self.files(part)
        return {
            f"{prefix}_TLS_CERT_FILE": files.cert_file,
            f"{prefix}_TLS_KEY_FILE": files.key_file,
            f"{prefix}_TLS_CA_FILE": files.ca_file,
        }

    def issue(
        self,
        part: str,
        *,
        dns_names: Sequence[str] | None = None,
        into: TlsFiles | None = None,
    ) -> x509.Certificate:
        """Issue ``part`` a new certificate and key (a rotation), replacing its files atomically.

        ``dns_names`` replaces the usual ``<part>``, ``localhost``; ``into``
        writes elsewhere than the part's own files.
        """
        authority, authority_key = _load_ca(self)
        target = into or self.files(part)
        names = list(dns_names) if dns_names is not None else _dns_names(part)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _leaf(part, names, key, authority, authority_key)
        _write(Path(target.key_file), _key_pem(key), private=True)
        _write(Path(target.cert_file), certificate.public_bytes(serialization.Encoding.PEM))
        return certificate


def _dns_names(part: str) -> list[str]:
    return [] if part == CLIENT else [part, "localhost"]


def ensure_dev_ca(folder: str | Path, parts: Sequence[str] = PARTS) -> DevCa:
    """The CA and every part's (and the developer client's) certificate in ``folder``,
    keeping the valid files already there."""
    ca = DevCa(Path(folder))
    ca.folder.mkdir(parents=True, exist_ok=True)
    if not _ca_valid(ca):
        _new_ca(ca)
    authority, _ = _load_ca(ca)
    for part in (*parts, CLIENT):
        if not _leaf_valid(ca.files(part), authority, part):
            ca.issue(part)
    return ca


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca_valid(ca: DevCa) -> bool:
    try:
        authority, key = _load_ca(ca)
    except (OSError, ValueError, TypeError):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    same_key = authority.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) == key.public_key().public_bytes(serialization.Encoding.DER, public)
    return same_key and authority.not_valid_after_utc - _now() > RENEW_BEFORE


def _leaf_valid(files: TlsFiles, authority: x509.Certificate, part: str) -> bool:
    try:
        chain, key, ca = files.read()
        leaf = check_pair(chain, key, ca)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    return (
        leaf.issuer == authority.subject
        and leaf.not_valid_after_utc - _now() > RENEW_BEFORE
        and spiffe_id_of_part(part) in names.get_values_for_type(x509.UniformResourceIdentifier)
        and set(_dns_names(part)) <= set(names.get_values_for_type(x509.DNSName))
    )


def _load_ca(ca: DevCa) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    authority = x509.load_pem_x509_certificate(ca.ca_file.read_bytes())
    key = serialization.load_pem_private_key(ca.ca_key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the dev CA's key is not an EC key")
    return authority, key


def _new_ca(ca: DevCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Astra development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Astra development CA"),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(ca.ca_key_file, _key_pem(key), private=True)
    _write(ca.ca_file, certificate.public_bytes(serialization.Encoding.PEM))


def _leaf(
    part: str,
    dns_names: Sequence[str],
    key: ec.EllipticCurvePrivateKey,
    authority: x509.Certificate,
    authority_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    alternative: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id_of_part(part))]
    alternative += [x509.DNSName(name) for name in dns_names]
    if part != CLIENT:
        alternative.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if part != CLIENT:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)  # parts serve and call
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, part)]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write by renaming a finished file into place: a reader sees the old file or the new one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600 if private else 0o644)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chassis.tls.devca",
        description="Create (or keep) a development CA and certificates for every part.",
    )
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    ca = ensure_dev_ca(args.folder)
    print(f"development CA and certificates in {ca.folder}")


if __name__ == "__main__":
    main()
