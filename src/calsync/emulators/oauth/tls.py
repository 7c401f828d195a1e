"""A local certificate authority and a server certificate for loopback, made with ``cryptography``.

Why: MSAL accepts only an ``https://`` authority, so the Microsoft flavour must be served over TLS;
clients then trust ``ca.pem`` (``verify=`` in MSAL, requests or httpx) instead of turning
certificate checks off. The files are reused when the directory already holds them, so a client
configured with the CA keeps working across emulator restarts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsFiles", "ensure_tls_files"]

_VALID_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate (what clients trust) and the server's certificate and key (what uvicorn serves)."""

    ca_cert: str
    cert: str
    key: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "calsync emulators"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])  # fmt: skip


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def ensure_tls_files(directory: str | os.PathLike[str], hosts: tuple[str, ...] = ()) -> TlsFiles:
    """``ca.pem``, ``server.pem`` and ``server-key.pem`` in ``directory``, made there unless all three exist.

    The server certificate names localhost, 127.0.0.1 and ::1 (plus ``hosts``), carries the extensions
    strict verifiers insist on (key usages, subject and authority key identifiers), and is signed by a
    CA made for it alone, whose key is not kept.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(str(folder / "ca.pem"), str(folder / "server.pem"), str(folder / "server-key.pem"))
    if all(Path(p).exists() for p in (files.ca_cert, files.cert, files.key)):
        return files
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("calsync emulator local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(Path(files.ca_cert), ca.public_bytes(pem))
    _write(Path(files.cert), cert.public_bytes(pem))
    _write(
        Path(files.key),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    return files
