"""TLS verification policy and TLS failure diagnosis, shared by the built-in backends.

Certificates are verified unless a context says ``insecure: true``; any other way of
switching verification off (``verify: false``, librdkafka's
``enable.ssl.certificate.verification: false``) is refused unless ``insecure: true``
confirms it, so verification is never lost silently. The CLI prints a warning on every
run that uses an insecure section.

Client libraries report a failed handshake vaguely (librdkafka says "certificate verify
failed" whatever the reason). ``diagnose`` repeats the handshake with Python's ssl
module, which reports the X.509 verification result, so the user learns *why*: unknown
CA, expired certificate, or a host name the certificate does not cover.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

from qctl.errors import ConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}

# OpenSSL X509_V_ERR_* codes (x509_vfy.h).
_EXPIRED = {10}  # CERT_HAS_EXPIRED
_NOT_YET_VALID = {9}
_UNKNOWN_CA = {2, 18, 19, 20, 21, 27}  # issuer unknown, self-signed, untrusted
_HOST_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH


def flag(settings: Mapping[str, Any], key: str, section: str, default: bool = False) -> bool:
    """A yes/no setting written as a YAML boolean or as text (``key=true`` on the CLI)."""
    value = settings.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{section} setting {key!r} must be true or false, not {value!r}")


def is_insecure(settings: Mapping[str, Any], section: str) -> bool:
    """Whether the section explicitly turned TLS certificate verification off."""
    return flag(settings, "insecure", section)


#: What ``insecure: true`` sets in a ``kafka`` section (librdkafka's property names); set
#: any other way, these values are refused.
KAFKA_INSECURE_OVERRIDES = {
    "enable.ssl.certificate.verification": "false",
    "ssl.endpoint.identification.algorithm": "none",
}


def apply_kafka_verification(conf: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """Kafka certificate verification stays on unless ``insecure: true`` (``conf`` gets
    ``KAFKA_INSECURE_OVERRIDES`` then); other ways to turn it off fail. Both librdkafka's
    configuration and qctl's own wire client take their properties through this."""
    if is_insecure(settings, "kafka"):
        conf.update(KAFKA_INSECURE_OVERRIDES)
        return
    for key, spellings in _LIBRDKAFKA_OFF.items():
        value = conf.get(key)
        if value is not None and str(value).lower() in spellings:
            raise refuse_silent_off("kafka", f"{key}: {value}")


#: Every way librdkafka reads these as "off" (booleans: false, f, 0; enums in any case).
_LIBRDKAFKA_OFF = {
    "enable.ssl.certificate.verification": {"false", "f", "0"},
    "ssl.endpoint.identification.algorithm": {"none"},
}


def insecure_warning(context: str, backend: str) -> str:
    return (
        f"context {context!r}: TLS certificate verification is OFF for {backend} "
        "(insecure: true); the cluster's identity is not checked"
    )


def refuse_silent_off(section: str, what: str) -> ConfigError:
    return ConfigError(
        f"{section} setting {what} turns TLS certificate verification off",
        f"add insecure: true to the context's {section} section to confirm "
        "(qctl then warns on every run), or remove the setting",
    )


def explain(exc: BaseException, host: str) -> tuple[str, str] | None:
    """(cause, fix) for a TLS failure, or None when ``exc`` is not one we can name."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _EXPIRED:
            return (
                "the server's certificate has expired",
                "renew the server certificate (or check this machine's clock)",
            )
        if code in _NOT_YET_VALID:
            return (
                "the server's certificate is not valid yet",
                "check this machine's clock or the certificate's dates",
            )
        if code in _UNKNOWN_CA:
            return (
                "the server's certificate is signed by an unknown CA",
                "point the CA setting (ssl.ca.location / ca_file) at the CA that signed it",
            )
        if code in _HOST_MISMATCH:
            return (
                f"the server's certificate does not match host {host!r} (hostname mismatch)",
                "connect with a host name the certificate lists, or reissue the certificate",
            )
        return (f"certificate verification failed: {exc.verify_message}", "check the CA setting")
    text = str(exc).lower()
    # Alerts: the server rejected *our* client certificate.
    if "alert certificate expired" in text:
        return (
            "the server rejected the client certificate: it has expired",
            "renew the client certificate (cert_file / ssl.certificate.location)",
        )
    if "alert unknown ca" in text:
        return (
            "the server rejected the client certificate: signed by a CA it does not trust",
            "use a client certificate issued by the server's CA",
        )
    if "alert bad certificate" in text or "alert certificate required" in text:
        return (
            "the server rejected the client certificate",
            "check cert_file/key_file (or ssl.certificate.location)",
        )
    return None


def diagnose(
    host: str, port: int, context: ssl.SSLContext, timeout: float
) -> tuple[str, str] | None:
    """Repeat a failed handshake with Python's ssl to learn why it failed (bounded).

    With TLS 1.3 a server rejects a client certificate *after* the client's handshake
    completed, and its alert can be lost in a race with the connection's close; under
    TLS 1.2 the rejection is part of the handshake. So when the first try reached the
    server but explains nothing, try once more capped at TLS 1.2.
    """
    reached, found = _handshake(host, port, context, timeout)
    if found is None and reached and context.maximum_version != ssl.TLSVersion.TLSv1_2:
        try:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        except (ValueError, ssl.SSLError):
            return None
        found = _handshake(host, port, context, timeout)[1]
    return found


def _handshake(
    host: str, port: int, context: ssl.SSLContext, timeout: float
) -> tuple[bool, tuple[str, str] | None]:
    """(whether the TCP connection was made, the explained TLS failure if any)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False, None  # not a TLS problem: the caller's own error says enough
    try:
        sock.settimeout(timeout)
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.do_handshake()
            # TLS 1.3: a rejected client certificate shows up on the first read.
            tls.settimeout(min(timeout, 0.5))
            try:
                tls.recv(1)
            except TimeoutError:
                return True, None
    except (OSError, ssl.SSLError) as exc:
        return True, explain(exc, host)
    finally:
        sock.close()
    return True, None
