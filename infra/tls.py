"""Certificates for the local broker's SASL_SSL listener, generated on the machine that uses them.

A throw-away certificate authority signs one server certificate for the loopback address; the
CA's private key is never written (it is needed only for that signature), the server's key is
written only into the state directory with mode 0600. Nothing here is committed: every state
directory gets its own pair the first time the broker is prepared.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Validity of the generated certificates [days]; a state directory older than that gets new ones.
VALID_DAYS = 365


@dataclass(frozen=True)
class TlsFiles:
    """The files of one broker's TLS identity."""

    ca_cert: Path  #: PEM certificate clients trust (``MINGO_KAFKA_SSL_CA_LOCATION``)
    server_pem: Path  #: PEM private key (PKCS#8, unencrypted, mode 0600) + certificate chain


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mingo-dataflow local infra"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _valid(path: Path, now: datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > now + timedelta(days=1)


def ensure_server_certificate(directory: Path, host: str) -> TlsFiles:
    """A CA certificate and a server key + certificate for ``host`` (an IP address).

    Reuses the files of an earlier call while they are valid for more than a day.

    Parameters
    ----------
    directory : Path
        Where to write ``ca.pem`` and ``server.pem`` (created, mode 0700).
    host : str
        The IP address clients connect to; it becomes the certificate's subjectAltName, which
        librdkafka verifies (``ssl.endpoint.identification.algorithm=https``, its default).
    """
    files = TlsFiles(directory / "ca.pem", directory / "server.pem")
    now = datetime.now(UTC)
    if _valid(files.ca_cert, now) and _valid(files.server_pem, now):
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mingo local CA"))
        .issuer_name(_name("mingo local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = server_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    descriptor = os.open(files.server_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_pem + chain)
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files
