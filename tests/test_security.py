"""Authentication and TLS against real servers; secrets never appear in errors or logs."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.files.base import ContentFile

from natsstorage import NatsStorage, _bridge
from natsstorage.exceptions import NatsUnavailable
from natsstorage.testing import NatsServer

PASSWORD = "pa55-w0rd-never-shown"
TOKEN = "t0ken-never-shown"


@contextlib.contextmanager
def server(tmp_path: Path, config: str) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path / "server", config=config) as nats:
        try:
            yield nats
        finally:
            _bridge.close_connections()


def round_trip(storage: NatsStorage) -> bytes:
    storage.save("secret.txt", ContentFile(b"classified"))
    return storage.open("secret.txt").read()


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text


def test_user_and_password(tmp_path, bucket_name, caplog):
    config = f'authorization {{ user: alice, password: "{PASSWORD}" }}'
    with server(tmp_path, config) as nats:
        good = NatsStorage(bucket_name, servers=nats.url, user="alice", password=PASSWORD)
        assert round_trip(good) == b"classified"
        bad = NatsStorage(bucket_name, servers=nats.url, user="alice", password=PASSWORD + "x", connect_timeout=1.0)
        with caplog.at_level(logging.DEBUG), pytest.raises(NatsUnavailable, match="[Aa]uthorization") as error:
            bad.exists("secret.txt")
    assert_no_secret(str(error.value))
    assert_no_secret(caplog.text)


def test_password_in_the_url_is_not_shown(tmp_path, bucket_name, caplog):
    config = f'authorization {{ user: alice, password: "{PASSWORD}" }}'
    with server(tmp_path, config) as nats:
        url = f"nats://alice:{PASSWORD}@127.0.0.1:{nats.port}"
        assert round_trip(NatsStorage(bucket_name, servers=url)) == b"classified"
        wrong = f"nats://alice:{PASSWORD}x@127.0.0.1:{nats.port}"
        with caplog.at_level(logging.DEBUG), pytest.raises(NatsUnavailable) as error:
            NatsStorage(bucket_name, servers=wrong, connect_timeout=1.0).exists("a")
    assert f"nats://127.0.0.1:{nats.port}" in str(error.value)
    assert_no_secret(str(error.value))
    assert_no_secret(caplog.text)


def test_token(tmp_path, bucket_name, caplog):
    with server(tmp_path, f'authorization {{ token: "{TOKEN}" }}') as nats:
        assert round_trip(NatsStorage(bucket_name, servers=nats.url, token=TOKEN)) == b"classified"
        with caplog.at_level(logging.DEBUG), pytest.raises(NatsUnavailable, match="[Aa]uthorization") as error:
            NatsStorage(bucket_name, servers=nats.url, token="wrong", connect_timeout=1.0).exists("a")
    assert_no_secret(str(error.value))
    assert_no_secret(caplog.text)


def make_certificates(directory: Path) -> tuple[Path, Path, Path, Path]:
    """A throwaway CA, and a certificate for 127.0.0.1 signed by it; plus an unrelated CA."""

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        encoding, format = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
        path.write_bytes(key.private_bytes(encoding, format, serialization.NoEncryption()))
        return path

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = write_cert(certificate("test CA", ca_key, "test CA", ca_key, ca=True), directory / "ca.pem")
    other = write_cert(certificate("other CA", other_key, "other CA", other_key, ca=True), directory / "other.pem")
    cert = write_cert(certificate("127.0.0.1", server_key, "test CA", ca_key, ca=False), directory / "server.pem")
    return ca, other, cert, write_key(server_key, directory / "server-key.pem")


def test_tls_only_server(tmp_path, bucket_name):
    ca, other_ca, cert, key = make_certificates(tmp_path)
    config = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}'
    with server(tmp_path, config) as nats:
        url = f"tls://127.0.0.1:{nats.port}"
        trusted = NatsStorage(bucket_name, servers=url, tls_ca_file=str(ca))
        assert round_trip(trusted) == b"classified"
        untrusted = NatsStorage(bucket_name, servers=url, tls_ca_file=str(other_ca), connect_timeout=1.0)
        with pytest.raises(NatsUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.exists("a")
        plain = NatsStorage(bucket_name, servers=nats.url, connect_timeout=1.0)  # nats:// without TLS settings
        with pytest.raises(NatsUnavailable):
            plain.exists("a")
