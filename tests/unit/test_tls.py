"""The development CA's certificates, and the server credentials' reload of replaced files."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import grpc
import pytest
from chassis.auth.principal import Principal, PrincipalKind
from chassis.grpc.context import CallContext, reset_current_call, set_current_call
from chassis.tls import ReloadingCertificates, ReloadingChannel, TlsFiles, spiffe_id
from chassis.tls.credentials import check_pair
from chassis.tls.devca import PARTS, ensure_dev_ca
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from ledger.entrypoints.grpc_api import caller_from_principal


def _certificate(path: str | Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _names(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_every_part_gets_a_certificate_naming_it_signed_by_the_ca(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    authority = _certificate(ca.ca_file)
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for part in PARTS:
        files = ca.files(part)
        leaf = _certificate(files.cert_file)
        leaf.verify_directly_issued_by(authority)  # raises unless the CA signed it
        names = _names(leaf)
        assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://astra/{part}"
        ]
        assert names.get_values_for_type(x509.DNSName) == [part, "localhost"]
        assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
        public = leaf.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1"
        assert check_pair(*files.read()) == leaf
        assert os.stat(files.key_file).st_mode & 0o077 == 0  # keys readable by their owner only


def test_the_developer_client_is_named_client_and_serves_nothing(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    leaf = _certificate(ca.client.cert_file)
    leaf.verify_directly_issued_by(_certificate(ca.ca_file))
    assert _names(leaf).get_values_for_type(x509.DNSName) == []
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert spiffe_id(Path(ca.client.cert_file).read_bytes()) == "spiffe://astra/client"


def test_running_it_again_keeps_valid_files_and_replaces_broken_ones(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    ensure_dev_ca(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before

    Path(ca.files("ledger").key_file).write_bytes(b"not a key")
    ensure_dev_ca(tmp_path)
    assert check_pair(*ca.files("ledger").read())
    assert Path(ca.files("ledger").cert_file).read_bytes() != before["ledger.pem"]
    assert Path(ca.files("identity").cert_file).read_bytes() == before["identity.pem"]


def test_a_new_ca_reissues_every_certificate(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    old_identity = Path(ca.files("identity").cert_file).read_bytes()
    ca.ca_key_file.unlink()
    ensure_dev_ca(tmp_path)
    assert Path(ca.files("identity").cert_file).read_bytes() != old_identity
    _certificate(ca.files("identity").cert_file).verify_directly_issued_by(_certificate(ca.ca_file))


def test_a_certificate_without_a_spiffe_uri_names_no_peer(tmp_path: Path) -> None:
    assert spiffe_id(b"not a certificate") is None
    ca = ensure_dev_ca(tmp_path)
    assert spiffe_id(ca.ca_file.read_bytes()) is None  # the CA has no SAN at all


# --- reload ------------------------------------------------------------------------


def test_the_fetcher_keeps_its_configuration_until_the_files_change(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    fetcher = ReloadingCertificates(ca.files("ledger"))
    assert fetcher() is None
    assert fetcher() is None
    assert fetcher.reloads == 0


def test_the_fetcher_picks_up_replaced_files(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    fetcher = ReloadingCertificates(ca.files("ledger"))
    old_serial = fetcher.certificate.serial_number

    new = ca.issue("ledger")
    configuration = fetcher()
    assert isinstance(configuration, grpc.ServerCertificateConfiguration)
    assert fetcher.certificate.serial_number == new.serial_number != old_serial
    assert fetcher.reloads == 1
    assert fetcher() is None  # once


def test_a_half_replaced_pair_keeps_the_old_configuration_until_it_is_whole(
    tmp_path: Path,
) -> None:
    ca = ensure_dev_ca(tmp_path)
    files = ca.files("ledger")
    fetcher = ReloadingCertificates(files)
    old_serial = fetcher.certificate.serial_number
    # A rotation caught between its two writes: the new certificate, the old key.
    staging = TlsFiles(str(tmp_path / "next.pem"), str(tmp_path / "next-key.pem"), files.ca_file)
    ca.issue("ledger", into=staging)
    os.replace(staging.cert_file, files.cert_file)
    assert fetcher() is None
    assert fetcher.certificate.serial_number == old_serial

    os.replace(staging.key_file, files.key_file)
    assert fetcher() is not None
    assert fetcher.certificate.serial_number != old_serial


def test_a_certificate_of_another_ca_is_not_loaded(tmp_path: Path) -> None:
    ours, theirs = ensure_dev_ca(tmp_path / "ours"), ensure_dev_ca(tmp_path / "theirs")
    files = ours.files("ledger")
    with pytest.raises(ValueError, match="not signed by the CA"):
        ReloadingCertificates(TlsFiles(*theirs.files("ledger").paths()[:2], files.ca_file))


# --- the peer on the call -----------------------------------------------------------


def test_the_ledger_knows_which_part_called() -> None:
    principal = Principal(
        "cli_payments",
        PrincipalKind.CLIENT,
        "cli_payments",
        frozenset(),
        "tok_1",
        datetime.now(UTC),
    )
    call = CallContext("req_1", "/m", principal=principal, peer="spiffe://astra/payments")
    token = set_current_call(call)
    try:
        caller = caller_from_principal(cast(grpc.ServicerContext, None))
    finally:
        reset_current_call(token)
    assert caller.peer == "spiffe://astra/payments"
    assert caller.customer_id == ""


def test_a_client_channel_follows_its_files_and_waits_for_a_whole_pair(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    files = ca.client
    # Nothing dials before a call: no server needed to see which channel calls would use.
    with ReloadingChannel("127.0.0.1:9", files, [], check_interval=0) as channel:
        generation, first = channel.current()
        assert channel.current() == (generation, first)

        staging = TlsFiles(str(tmp_path / "n.pem"), str(tmp_path / "n-key.pem"), files.ca_file)
        ca.issue("client", into=staging)
        os.replace(staging.cert_file, files.cert_file)
        assert channel.current() == (generation, first)  # new certificate, old key: not yet

        os.replace(staging.key_file, files.key_file)
        newer, second = channel.current()
        assert newer == generation + 1
        assert second is not first
        assert channel.current() == (newer, second)
