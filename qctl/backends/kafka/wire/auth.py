"""SASL for qctl's own wire client: PLAIN and SCRAM-SHA-256/512, as librdkafka does them.

On a SASL listener a connection authenticates after ApiVersions: SaslHandshake v1 names
the mechanism, then SaslAuthenticate carries the mechanism's messages (KIP-152). SCRAM
follows RFC 5802 / RFC 7677. SaslAuthenticate v1 answers how long the session lasts
(KIP-368); ``connection`` authenticates again on the same connection before then. GSSAPI
and OAUTHBEARER are not spoken here: contexts with them hand their commands to
librdkafka (``config``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36

#: Mechanism -> hash for SCRAM; PLAIN needs none.
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *SCRAM_HASHES)


class SaslError(Exception):
    """Authentication failed, with the broker's reason."""


@dataclass(frozen=True)
class SaslCredentials:
    mechanism: str
    username: str
    password: str = field(repr=False)


class ScramClient:
    """One SCRAM conversation (RFC 5802): first message, final message, server check."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str = "") -> None:
        self.hash = SCRAM_HASHES[mechanism]
        self.username = username
        self.password = password
        self.nonce = nonce or secrets.token_urlsafe(24)
        name = username.replace("=", "=3D").replace(",", "=2C")
        self.first_bare = f"n={name},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise SaslError("the server's SCRAM nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check(self, server_final: bytes) -> None:
        attrs = dict(part.split("=", 1) for part in server_final.decode().split(","))
        if "e" in attrs:
            raise SaslError(attrs["e"])
        if not hmac.compare_digest(base64.b64decode(attrs.get("v", "")), self._server_signature):
            raise SaslError("the server's SCRAM signature does not match")

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()


def authenticate(
    request: Callable[[bytes], bytes],
    creds: SaslCredentials,
    next_id: Callable[[], int],
    authenticate_version: int,
) -> int:
    """Log in (or log in again, KIP-368) on a connection: ``request`` sends one frame and
    returns the answer, ``next_id`` numbers the requests. Returns the session lifetime
    in milliseconds the last SaslAuthenticate answer gave (0: none, or v0)."""
    from qctl.backends.kafka.wire.codec import Reader, error_name, request_header_v1, wire_string

    r = Reader(
        request(request_header_v1(SASL_HANDSHAKE, 1, next_id()) + wire_string(creds.mechanism))
    )
    r.int32()  # correlation id
    code = r.int16()
    if code:
        offered = [r.string() or "" for _ in range(r.array_len())]
        raise SaslError(
            f"the broker does not offer {creds.mechanism} ({error_name(code)}; "
            f"it offers {', '.join(offered) or 'nothing'})"
        )
    lifetime = 0

    def exchange(auth: bytes) -> bytes:
        nonlocal lifetime
        header = request_header_v1(SASL_AUTHENTICATE, authenticate_version, next_id())
        reply = Reader(request(header + struct.pack(">i", len(auth)) + auth))
        reply.int32()  # correlation id
        code = reply.int16()
        message = reply.string()
        size = reply.int32()
        data = reply.take(size) if size > 0 else b""
        if code:
            raise SaslError(message or error_name(code))
        # librdkafka (re)starts its re-authentication timer on every answer: the last
        # one counts.
        lifetime = reply.int64() if authenticate_version >= 1 else 0
        return data

    if creds.mechanism == "PLAIN":
        exchange(f"\0{creds.username}\0{creds.password}".encode())
        return lifetime
    scram = ScramClient(creds.mechanism, creds.username, creds.password)
    server_first = exchange(scram.first())
    scram.check(exchange(scram.final(server_first)))
    return lifetime
