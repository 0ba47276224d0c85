"""The connection contract of qctl's wire client: librdkafka's properties, honoured.

A context's ``kafka`` section holds librdkafka properties. Every Kafka path of qctl
either connects exactly as librdkafka would with them, or leaves the command to
librdkafka before connecting (``wire_config`` returns None).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qctl.backends.kafka.wire.auth import SaslCredentials


def ssl_context_from_settings(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """An SSL context from librdkafka's ``ssl.*`` properties."""
    ctx = ssl.create_default_context(cafile=settings.get("ssl.ca.location"))
    cert = settings.get("ssl.certificate.location")
    if cert:
        ctx.load_cert_chain(
            cert, settings.get("ssl.key.location"), settings.get("ssl.key.password")
        )
    algorithm = str(settings.get("ssl.endpoint.identification.algorithm", "https"))
    if algorithm.lower() == "none":
        ctx.check_hostname = False
    if str(settings.get("enable.ssl.certificate.verification", "true")).lower() in ("false", "0"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class WireConfig:
    """How qctl's wire client connects to a context's brokers."""

    ssl_context: ssl.SSLContext | None = None
    sasl: SaslCredentials | None = None


#: A plain connection (the dev brokers, and tests).
PLAINTEXT = WireConfig()


def wire_config(settings: Mapping[str, Any]) -> WireConfig | None:
    """How to connect from librdkafka's properties (``insecure`` applied); None when the
    wire client cannot connect exactly as librdkafka would (the caller then leaves the
    work to librdkafka)."""
    from qctl.backends.kafka.client import ssl_settings
    from qctl.backends.kafka.wire.auth import credentials_from_settings

    protocol = str(settings.get("security.protocol", "PLAINTEXT")).upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        return None
    sasl = credentials_from_settings(settings)
    if protocol.startswith("SASL") and sasl is None:
        return None
    tls = ssl_context_from_settings(ssl_settings(settings)) if "SSL" in protocol else None
    return WireConfig(tls, sasl)
