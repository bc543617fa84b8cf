"""Certificates for a TLS engine on loopback: a CA, a server certificate for 127.0.0.1 and a
client certificate, as ``dockerd --tlsverify`` setups have them (``ca.pem``, ``cert.pem``,
``key.pem`` for the client; the server's pair for the proxy)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """One CA's material: ``client_dir`` holds ca.pem, cert.pem and key.pem (what
    DOCKER_CERT_PATH and ``docker context create --docker ca=,cert=,key=`` take)."""

    client_dir: Path
    server_cert: Path
    server_key: Path

    @property
    def ca(self) -> Path:
        return self.client_dir / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.client_dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.client_dir / "key.pem"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if usage is None:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_tls_files(directory: Path, ca_name: str = "pdv-test-ca") -> TlsFiles:
    """A new CA in ``directory`` and the server and client certificates it signed."""
    client_dir = directory / "client"
    client_dir.mkdir(parents=True)
    ca_key = _key()
    ca = _certificate(ca_name, ca_key)
    server_key, client_key = _key(), _key()
    server = _certificate(
        "127.0.0.1", server_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    client = _certificate(
        "pdv-client", client_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(client_dir, directory / "server-cert.pem", directory / "server-key.pem")
    files.ca.write_bytes(ca.public_bytes(pem))
    files.cert.write_bytes(client.public_bytes(pem))
    files.key.write_bytes(_pem(client_key))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.server_key.write_bytes(_pem(server_key))
    return files
