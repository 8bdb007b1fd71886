"""Authentication and TLS against real servers; secrets never appear in errors or logs."""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test.utils import override_settings

from natsstorage import NatsStorage, close_connections
from natsstorage.exceptions import NatsUnavailable
from natsstorage.testing import NatsServer

from .helpers import MiB, random_bytes

PASSWORD = "pa55-w0rd-never-shown"
TOKEN = "t0ken-never-shown"


@contextlib.contextmanager
def server(tmp_path: Path, config: str) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path / "server", config=config) as nats:
        try:
            yield nats
        finally:
            close_connections()


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


# -- credentials files: a server in operator mode, with the JWTs nsc would make -----------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _jwt(issuer: nkeys.KeyPair, subject: nkeys.KeyPair, kind: str, **claims: object) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = {"jti": _b64(os.urandom(16)), "iat": int(time.time()), "iss": issuer.public_key.decode()}
    body.update(sub=subject.public_key.decode(), name=kind, nats={"type": kind, "version": 2, **claims})
    signed = f"{header}.{_b64(json.dumps(body).encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def _creds(account: nkeys.KeyPair, path: Path) -> Path:
    user = _new_key(nkeys.PREFIX_BYTE_USER)
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{_jwt(account, user, 'user', subs=-1, data=-1, payload=-1)}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    return path


def operator_mode(directory: Path) -> tuple[str, Path, Path]:
    """A server config trusting one operator, whose account may use JetStream; a .creds file of a user
    of that account, and one of a user of an account the operator never signed."""
    operator = _new_key(nkeys.PREFIX_BYTE_OPERATOR)
    system, account, stranger = (_new_key(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(3))
    limits = {"subs": -1, "conn": -1, "data": -1, "payload": -1, "mem_storage": -1, "disk_storage": -1}
    accounts = {
        system.public_key.decode(): _jwt(operator, system, "account"),
        account.public_key.decode(): _jwt(operator, account, "account", limits={**limits, "streams": -1}),
    }
    config = (
        f"operator: {_jwt(operator, operator, 'operator')}\n"
        f"system_account: {system.public_key.decode()}\n"
        f"resolver: MEMORY\nresolver_preload: {json.dumps(accounts)}\n"
    )
    return config, _creds(account, directory / "app.creds"), _creds(stranger, directory / "stranger.creds")


def test_credentials_file(tmp_path, bucket_name, caplog):
    config, creds, stranger = operator_mode(tmp_path)
    with server(tmp_path, config) as nats:
        assert round_trip(NatsStorage(bucket_name, servers=nats.url, credentials=str(creds))) == b"classified"
        untrusted = NatsStorage(bucket_name, servers=nats.url, credentials=str(stranger), connect_timeout=1.0)
        with caplog.at_level(logging.DEBUG), pytest.raises(NatsUnavailable, match="[Aa]uthorization") as error:
            untrusted.exists("secret.txt")
    seed = stranger.read_text().split("-----BEGIN USER NKEY SEED-----\n")[1].split()[0]
    assert seed not in str(error.value) and seed not in caplog.text


def test_credentials_without_nkeys_installed_say_what_to_install(tmp_path, monkeypatch):
    from natsstorage.checks import check_settings

    monkeypatch.setitem(sys.modules, "nkeys", None)  # as if not installed: import fails, find_spec finds none
    with pytest.raises(ImproperlyConfigured, match=r"needs the nkeys package.*pip install 'natsstorage\[nkeys\]'"):
        NatsStorage("media", credentials=str(tmp_path / "app.creds"))
    with override_settings(NATSSTORAGE={"credentials": str(tmp_path / "app.creds")}):
        assert [error.id for error in check_settings()] == ["natsstorage.E001"]


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
            # Python 3.13 verifies with VERIFY_X509_STRICT: key identifiers on every certificate,
            # and a CA whose key usage allows signing certificates.
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
            .add_extension(key_usage(ca=ca), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def key_usage(*, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

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
        big = random_bytes(3 * MiB + 1)  # chunks written straight from the payload, through TLS
        assert trusted.open(trusted.save("big.bin", ContentFile(big))).read() == big
        untrusted = NatsStorage(bucket_name, servers=url, tls_ca_file=str(other_ca), connect_timeout=1.0)
        with pytest.raises(NatsUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.exists("a")
        plain = NatsStorage(bucket_name, servers=nats.url, connect_timeout=1.0)  # nats:// without TLS settings
        with pytest.raises(NatsUnavailable):
            plain.exists("a")
