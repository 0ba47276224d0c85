"""SASL for qctl's own wire client: PLAIN and SCRAM-SHA-256/512, as librdkafka does them.

The wire client (``connection``) sends the few requests confluent-kafka does not expose
(OffsetDelete) or where librdkafka's admin call can crash the process (OffsetFetch during
a coordinator failover, librdkafka issue #5040). On a SASL listener a connection must
authenticate first: SaslHandshake v1 names the mechanism, then SaslAuthenticate v1
carries the mechanism's messages (KIP-152). SCRAM follows RFC 5802 / RFC 7677. GSSAPI
and OAUTHBEARER are not spoken here; callers fall back to librdkafka for those.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def credentials_from_settings(settings: Mapping[str, Any]) -> SaslCredentials | None:
    """The SASL login of librdkafka's ``sasl.*`` properties, or None when this client
    cannot speak the mechanism (GSSAPI, OAUTHBEARER) or the protocol is not SASL."""
    protocol = str(settings.get("security.protocol", "PLAINTEXT")).upper()
    if not protocol.startswith("SASL"):
        return None
    mechanism = str(settings.get("sasl.mechanism", settings.get("sasl.mechanisms", "GSSAPI")))
    mechanism = mechanism.upper()
    username = settings.get("sasl.username")
    if mechanism not in MECHANISMS or username is None:
        return None
    return SaslCredentials(mechanism, str(username), str(settings.get("sasl.password") or ""))


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


def _header(api_key: int, version: int, correlation_id: int) -> bytes:
    from qctl.backends.kafka.wire.codec import CLIENT_ID

    return struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def authenticate(request: Callable[[bytes], bytes], creds: SaslCredentials) -> None:
    """Log in on a fresh connection; ``request`` sends one frame and returns the reply."""
    from qctl.backends.kafka.wire.codec import Reader, error_name

    r = Reader(request(_header(SASL_HANDSHAKE, 1, 1) + _string(creds.mechanism)))
    r.int32()  # correlation id
    code = r.int16()
    if code:
        offered = [r.string() or "" for _ in range(r.array_len())]
        raise SaslError(
            f"the broker does not offer {creds.mechanism} ({error_name(code)}; "
            f"it offers {', '.join(offered) or 'nothing'})"
        )
    correlation = 2

    def exchange(auth: bytes) -> bytes:
        nonlocal correlation
        frame = _header(SASL_AUTHENTICATE, 1, correlation) + struct.pack(">i", len(auth)) + auth
        correlation += 1
        reply = Reader(request(frame))
        reply.int32()  # correlation id
        code = reply.int16()
        message = reply.string()
        size = reply.int32()
        data = reply.take(size) if size > 0 else b""
        if code:
            raise SaslError(message or error_name(code))
        return data

    if creds.mechanism == "PLAIN":
        exchange(f"\0{creds.username}\0{creds.password}".encode())
        return
    scram = ScramClient(creds.mechanism, creds.username, creds.password)
    server_first = exchange(scram.first())
    scram.check(exchange(scram.final(server_first)))
