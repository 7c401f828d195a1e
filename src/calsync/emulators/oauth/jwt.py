"""Just enough JOSE for the authorization servers: RS256 JSON Web Tokens signed and verified with
``cryptography`` (already a calsync dependency), the signing key's JWKS, and RSA keys as PEM.

Why not PyJWT: the emulators import only what calsync itself depends on, so they can be lifted out
and run alone; RS256 is three lines on top of ``cryptography``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from calsync.emulators.common import b64url_decode

__all__ = [
    "JwtError",
    "SigningKey",
    "b64url",
    "jwt_parts",
    "new_rsa_key",
    "private_pem",
    "public_pem_key",
    "verify_rs256",
]


class JwtError(ValueError):
    """A token that is not a well-formed JWT, or whose signature does not verify."""


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding (the JOSE spelling)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key (what Google's service-account keys and Entra's signing keys are)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, the form Google puts in a service-account key file's ``private_key``."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def public_pem_key(pem: str) -> rsa.RSAPublicKey:
    """The public half of a PEM private key (ValueError when it is not an RSA key)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")  # noqa: TRY004 - callers answer ValueError
    return key.public_key()


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, the signed input and the signature of a compact JWT; JwtError when malformed."""
    pieces = token.split(".") if isinstance(token, str) else []
    if len(pieces) != 3:
        raise JwtError("not a compact JWT")
    decoded = [b64url_decode(p) for p in pieces]
    if any(d is None for d in decoded):
        raise JwtError("bad base64")
    header_raw, claims_raw, signature = (d or b"" for d in decoded)
    try:
        header, claims = json.loads(header_raw), json.loads(claims_raw)
    except ValueError:
        raise JwtError("bad JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("header and claims must be objects")
    return header, claims, f"{pieces[0]}.{pieces[1]}".encode("ascii"), signature


def verify_rs256(public_key: rsa.RSAPublicKey, signed: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s RS256 signature of ``signed``."""
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


class SigningKey:
    """The server's own RS256 key: signs ID tokens (and Microsoft's JWT access tokens), published as a JWKS."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._key: rsa.RSAPrivateKey | None = None

    @property
    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:  # made on first use: most emulator runs never sign anything
            self._key = new_rsa_key()
        return self._key

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        """A compact RS256 JWT of ``claims`` with this key's ``kid``."""
        header = {"alg": "RS256", "kid": self.kid, "typ": typ}
        signed = ".".join(b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
        signature = self.key.sign(signed.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64url(signature)}"

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}`` with this key as an RSA JWK (what a ``jwks_uri`` serves)."""
        numbers = self.key.public_key().public_numbers()

        def _int(n: int) -> str:
            return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": _int(numbers.n), "e": _int(numbers.e)}
        return {"keys": [jwk]}
