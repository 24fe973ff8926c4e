"""
Layer 4: the server on an ``ssl:`` endpoint with a generated RSA certificate,
driven by the virtual device over HTTPS with the certificate pinned as its
only trust root (TLS 1.2 and up).
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest_twisted
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from twisted.internet import reactor, ssl
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from pushd.sim import VirtualDevice
from tests.test_loopback import start


def make_certificate(folder: Any) -> bytes:
    """A self-signed RSA-2048 certificate for localhost and 127.0.0.1; :returns: its PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return pem


@implementer(IPolicyForHTTPS)
class _Pinned:
    """Trust exactly one certificate, as a terminal configured for our server would."""

    def __init__(self, pem: bytes) -> None:
        self._root = ssl.Certificate.loadPEM(pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"),
            trustRoot=self._root,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
        )


@pytest_twisted.ensureDeferred
async def test_a_device_uploads_over_https(tmp_path: Any) -> None:
    pem = make_certificate(tmp_path)
    listen = f"ssl:0:interface=127.0.0.1:privateKey={tmp_path}/key.pem:certKey={tmp_path}/cert.pem"
    service, url = await start(tmp_path, listen=(listen,))
    try:
        https = url.replace("http://127.0.0.1", "https://localhost")
        client = HTTPClient(Agent(reactor, contextFactory=_Pinned(pem)))
        device = VirtualDevice(client, reactor, https, "TLS0001", timeout=30)
        await device.handshake()
        for _ in range(20):
            device.punch()
        assert await device.upload_attlog() == 20
        assert await service.store.count("attendance", "TLS0001") == 20
        # and plain HTTP to the TLS port gets nowhere
        failed = False
        try:
            await treq.get(url + "/iclock/ping?SN=TLS0001", timeout=5)
        except Exception:
            failed = True
        assert failed
    finally:
        await service.stopService()
