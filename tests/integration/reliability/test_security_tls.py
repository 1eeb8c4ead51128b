"""TLS: certificates are verified by default, and a CA bundle can be given.

The emulator is served over HTTPS on 127.0.0.1 with a throwaway self-signed certificate
(made with ``cryptography`` when it is installed, else with the ``openssl`` command).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import certifi
import pandas as pd
import pytest

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.client.errors import InstasentConnectionError
from airflow_provider_instasent.emulator import Emulator
from airflow_provider_instasent.ingest import write_contacts

from .conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if not openssl:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="module")
def https_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The emulator behind TLS on 127.0.0.1: ``(https base URL, the certificate as a CA bundle)``."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    emulator = Emulator()
    server = emulator.bind()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    emulator.start()
    try:
        yield emulator.base_url.replace("http://", "https://"), cert
    finally:
        emulator.stop()


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets these variables replace the session's CA bundle: the tests control them."""
    for name in CA_ENV:
        monkeypatch.delenv(name, raising=False)


def set_connection(monkeypatch: pytest.MonkeyPatch, url: str, **extra: object) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": url, "password": ADMIN_TOKEN,
        "extra": {"project": "demo", "max_retries": 0, **extra}}))


@pytest.mark.usefixtures("no_ca_env")
def test_verification_is_on_by_default_and_the_extra_sets_it(monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    assert InstasentClient(token="t").session.verify is True
    set_connection(monkeypatch, "https://api.example.invalid")
    assert InstasentHook().get_conn().session.verify is True
    for value, expected in (("false", False), (False, False), ("true", True), ("", True),
                            ("/etc/ssl/private-ca.pem", "/etc/ssl/private-ca.pem")):
        set_connection(monkeypatch, "https://api.example.invalid", verify=value)
        assert InstasentHook().get_conn().session.verify == expected, value


@pytest.mark.usefixtures("no_ca_env")
def test_a_self_signed_server_is_refused_by_default(https_emulator, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    url, _ = https_emulator
    with InstasentClient(token=ADMIN_TOKEN, project="demo", base_url=url, max_retries=0) as client, \
            pytest.raises(InstasentConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get_project()
    set_connection(monkeypatch, url)
    ok, message = InstasentHook().test_connection()
    assert not ok and "CERTIFICATE_VERIFY_FAILED" in message
    # the system trust store does not make a self-signed certificate acceptable either
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with InstasentClient(token=ADMIN_TOKEN, project="demo", base_url=url, max_retries=0) as client, \
            pytest.raises(InstasentConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get_project()


@pytest.mark.usefixtures("no_ca_env")
def test_the_ca_bundle_option_trusts_the_server(https_emulator, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    url, cert = https_emulator
    with InstasentClient(token=ADMIN_TOKEN, project="demo", base_url=url, verify=str(cert)) as client:
        assert client.get_project()["entity"]["uid"] == "demo"
        assert write_contacts(client, pd.DataFrame({"_user_id": ["tls-1"]})).accepted == 1
    set_connection(monkeypatch, url, verify=str(cert))
    ok, message = InstasentHook().test_connection()
    assert ok, message


def test_the_ca_bundle_option_wins_over_the_environment(https_emulator, monkeypatch):
    """requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE replace a session's CA bundle (and
    verify=False); the client's own setting must win. Without an explicit setting, the
    environment's bundle is used (verification stays on)."""
    url, cert = https_emulator
    system = certifi.where()
    for name in CA_ENV:
        monkeypatch.setenv(name, system)
    with InstasentClient(token=ADMIN_TOKEN, project="demo", base_url=url, verify=str(cert), max_retries=0) as client:
        assert client.get_project()["entity"]["uid"] == "demo"
    with InstasentClient(token=ADMIN_TOKEN, project="demo", base_url=url, max_retries=0) as client:
        assert client.session.verify in (True, system)
        with pytest.raises(InstasentConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get_project()
