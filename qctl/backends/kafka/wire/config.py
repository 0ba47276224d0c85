"""The connection contract of qctl's wire client: librdkafka's properties, honoured.

A context's ``kafka`` section holds librdkafka properties. Every Kafka path of qctl either
connects exactly as librdkafka (2.x, as the confluent-kafka wheels build it: OpenSSL linked
statically) would with them, or leaves the command to librdkafka before connecting.
``decide`` says which: a ``WireConfig`` to connect with, or a ``Handover`` naming the
property and the reason. ``wire_config`` is the same answer for callers that only need to
know whether to step aside (the reason is logged at debug).

Every property is in ``CONTRACT`` with what the wire client does with it (docs/security.md
prints the same table):

* ``Effect.SPOKEN``: implemented with the same calls librdkafka makes (the TLS context
  is built with the OpenSSL calls of librdkafka's ``rdkafka_ssl.c``; SASL, sockets and
  the client id as ``rdkafka_sasl*.c``, ``rdkafka_transport.c`` and ``rdkafka_broker.c``
  do);
* ``Effect.HANDOVER``: the wire client cannot do the same, so a context that sets it
  hands the command to librdkafka;
* ``Effect.NONE``: it does not change how a connection is made.

Properties outside the connection families (``CONNECTION_FAMILIES``: producer, consumer,
metadata, logging... settings) do not affect connecting and are ignored; an unknown name
inside them hands over (librdkafka refuses it when it makes a client, and says why).
Properties apply only where librdkafka reads them: ``ssl.*`` with ``security.protocol``
SSL or SASL_SSL, ``sasl.*`` with SASL_PLAINTEXT or SASL_SSL.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from qctl import __version__, security
from qctl.backends.kafka.wire.auth import MECHANISMS, SaslCredentials

log = logging.getLogger(__name__)

#: Context keys that are qctl's own, not librdkafka properties.
QCTL_KEYS = frozenset({"bootstrap_servers", "dlq_patterns", "insecure", "dlq_group"})

#: The client id qctl's clients send unless the context sets ``client.id``
#: (librdkafka's own default, "rdkafka", is replaced by qctl for its clients too).
DEFAULT_CLIENT_ID = "qctl"


class Effect(enum.Enum):
    """What the wire client does with a property."""

    SPOKEN = "identical"
    HANDOVER = "hands the command to librdkafka"
    NONE = "no effect on connecting"


class Applies(enum.Enum):
    """When librdkafka reads a property."""

    ALWAYS = "always"
    TLS = "with security.protocol SSL or SASL_SSL"
    SASL = "with security.protocol SASL_PLAINTEXT or SASL_SSL"


@dataclass(frozen=True)
class Row:
    effect: Effect
    applies: Applies = Applies.ALWAYS
    #: How, or the exception, in a few words (the doc table's last column).
    note: str = ""


_S, _H, _N = Effect.SPOKEN, Effect.HANDOVER, Effect.NONE
_TLS, _SASL = Applies.TLS, Applies.SASL

#: Every librdkafka property of the connection families, and what the wire client does.
CONTRACT: dict[str, Row] = {
    "security.protocol": Row(_S, note="plaintext, ssl, sasl_plaintext, sasl_ssl (any case)"),
    "bootstrap.servers": Row(_S, note="the first addresses connected to"),
    "metadata.broker.list": Row(_H, note="qctl reads bootstrap_servers / bootstrap.servers"),
    "client.id": Row(_S, note="sent in every request header; qctl's default is qctl"),
    "client.software.name": Row(_S, note="sent in ApiVersions; default qctl"),
    "client.software.version": Row(_S, note="sent in ApiVersions; default qctl's version"),
    "client.dns.lookup": Row(
        _S, note="use_all_dns_ips; resolve_canonical_bootstrap_servers_only hands over"
    ),
    "client.rack": Row(_N, note="fetching from followers"),
    "broker.address.family": Row(_S, note="any, v4, v6"),
    "broker.address.ttl": Row(_N, note="every wire connection resolves anew"),
    "socket.timeout.ms": Row(_S, note="bounds each request (default: the command's --timeout)"),
    "socket.connection.setup.timeout.ms": Row(
        _S, note="bounds TCP, TLS, ApiVersions and SASL (default: --timeout)"
    ),
    "socket.keepalive.enable": Row(_S, note="SO_KEEPALIVE"),
    "socket.nagle.disable": Row(_S, note="TCP_NODELAY (default true)"),
    "socket.send.buffer.bytes": Row(_S, note="SO_SNDBUF when not 0"),
    "socket.receive.buffer.bytes": Row(_S, note="SO_RCVBUF when not 0"),
    "socket.max.fails": Row(_N, note="when to drop a connection after failed sends"),
    "socket.blocking.max.ms": Row(_N, note="deprecated, unused"),
    "connections.max.idle.ms": Row(_N, note="closing idle connections"),
    "reconnect.backoff.ms": Row(_N, note="waits between reconnects"),
    "reconnect.backoff.max.ms": Row(_N, note="waits between reconnects"),
    "reconnect.backoff.jitter.ms": Row(_N, note="deprecated, unused"),
    "api.version.request": Row(_S, note="true; false hands over"),
    "api.version.request.timeout.ms": Row(_S, note="bounds the ApiVersions request"),
    "api.version.fallback.ms": Row(_N, note="only after a failed ApiVersions"),
    "broker.version.fallback": Row(_N, note="only without ApiVersions"),
    "enable.ssl.certificate.verification": Row(
        _S, _TLS, note="with qctl's rule: false only with insecure: true"
    ),
    "ssl.endpoint.identification.algorithm": Row(
        _S, _TLS, note="https (default) or none; none only with insecure: true"
    ),
    "ssl.ca.location": Row(_S, _TLS, note="a file, a hashed directory, or probe"),
    "ssl.ca.pem": Row(_S, _TLS, note="loaded from memory"),
    "ssl.ca.certificate.stores": Row(_N, _TLS, note="Windows only"),
    "ssl.crl.location": Row(_S, _TLS, note="loaded, and the leaf checked against it"),
    "ssl.certificate.location": Row(_S, _TLS, note="with a key; alone hands over"),
    "ssl.certificate.pem": Row(_S, _TLS, note="from memory (memfd), never written to disk"),
    "ssl.key.location": Row(_S, _TLS, note="with a certificate; alone hands over"),
    "ssl.key.pem": Row(_S, _TLS, note="from memory (memfd), never written to disk"),
    "ssl.key.password": Row(_S, _TLS, note="for an encrypted key"),
    "ssl.keystore.location": Row(
        _S, _TLS, note="PKCS#12 read with the cryptography package; without it hands over"
    ),
    "ssl.keystore.password": Row(_S, _TLS, note="required with a keystore, as librdkafka"),
    "ssl.cipher.suites": Row(_S, _TLS, note="the same OpenSSL cipher list call"),
    "ssl.curves.list": Row(_S, _TLS, note="one curve; a list of several hands over"),
    "ssl.sigalgs.list": Row(_H, _TLS, note="Python's ssl cannot set it"),
    "ssl.providers": Row(_H, _TLS, note="Python's ssl cannot load OpenSSL providers"),
    "ssl.engine.location": Row(_H, _TLS, note="Python's ssl cannot load OpenSSL engines"),
    "ssl.engine.id": Row(_H, _TLS, note="Python's ssl cannot load OpenSSL engines"),
    "ssl_engine_callback_data": Row(_H, _TLS, note="an API-only setting"),
    "ssl.certificate.verify_cb": Row(_H, _TLS, note="an API-only callback"),
    "ssl_key": Row(_H, _TLS, note="an API-only setting"),
    "ssl_certificate": Row(_H, _TLS, note="an API-only setting"),
    "ssl_ca": Row(_H, _TLS, note="an API-only setting"),
    "sasl.mechanism": Row(
        _S, _SASL, note="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; GSSAPI, OAUTHBEARER hand over"
    ),
    "sasl.mechanisms": Row(_S, _SASL, note="alias of sasl.mechanism"),
    "sasl.username": Row(_S, _SASL),
    "sasl.password": Row(_S, _SASL),
    "enable.sasl.oauthbearer.unsecure.jwt": Row(_N, _SASL, note="OAUTHBEARER only"),
    "https.ca.location": Row(_N, _SASL, note="OAUTHBEARER's token endpoint only"),
    "https.ca.pem": Row(_N, _SASL, note="OAUTHBEARER's token endpoint only"),
    "plugin.library.paths": Row(_H, note="a plugin may change anything"),
    "interceptors": Row(_H, note="an API-only setting"),
    "socket_cb": Row(_H, note="an API-only callback"),
    "connect_cb": Row(_H, note="an API-only callback"),
    "closesocket_cb": Row(_H, note="an API-only callback"),
    "open_cb": Row(_H, note="an API-only callback"),
    "resolve_cb": Row(_H, note="an API-only callback"),
}

#: Name prefixes of the properties that can change how a connection is made; a name in
#: these families that ``CONTRACT`` does not know hands the command over.
CONNECTION_FAMILIES = (
    "security.",
    "ssl.",
    "ssl_",
    "sasl.",
    "socket.",
    "socket_",
    "broker.",
    "client.",
    "api.version.",
    "enable.ssl.",
    "enable.sasl.",
    "https.",
    "connections.",
    "reconnect.",
)
#: Families that only GSSAPI or OAUTHBEARER read (both hand over anyway).
_MECHANISM_ONLY = ("sasl.kerberos.", "sasl.oauthbearer.")

_PROTOCOLS = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"}
_TRUE = {"true", "t", "1"}
_FALSE = {"false", "f", "0"}
_FAMILIES = {"any": socket.AF_UNSPEC, "v4": socket.AF_INET, "v6": socket.AF_INET6}
#: Names OpenSSL's curve list takes for the NIST curves, as OpenSSL's short names.
_NIST_CURVES = {"P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1"}

#: librdkafka probes these CA locations, in order, when ssl.ca.location is unset or
#: "probe" and OpenSSL is linked statically (``rd_kafka_ssl_probe_and_set_default_ca_location``).
CA_PROBE_PATHS = (
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-bundle.crt",
    "/etc/pki/tls/certs/ca-bundle.trust.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
    "/etc/ssl/cacert.pem",
    "/etc/certs/ca-certificates.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/certs",
    "/usr/local/etc/ssl/cert.pem",
    "/usr/local/etc/ssl/cacert.pem",
    "/usr/local/etc/ssl/certs/cert.pem",
    "/usr/local/etc/ssl/certs/cacert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/etc/openssl/certs/ca-certificates.crt",
)


@dataclass(frozen=True)
class Handover:
    """Why a context's commands go to librdkafka: the property and the reason."""

    property: str
    reason: str

    def __str__(self) -> str:
        return f"{self.property}: {self.reason}"


class WireUnsupportedSettings(Exception):
    """Raised inside the mapping when a property hands the command over."""

    def __init__(self, handover: Handover) -> None:
        super().__init__(str(handover))
        self.handover = handover


@dataclass(frozen=True)
class SocketOptions:
    """The ``socket.*``, address and ApiVersions settings, in seconds and flags."""

    #: socket.timeout.ms; None: each request is bounded by the command's timeout alone.
    request_timeout: float | None = None
    #: socket.connection.setup.timeout.ms; None: the command's timeout alone.
    setup_timeout: float | None = None
    #: api.version.request.timeout.ms
    api_versions_timeout: float = 10.0
    keepalive: bool = False
    nodelay: bool = True
    send_buffer: int = 0
    receive_buffer: int = 0
    family: socket.AddressFamily = socket.AF_UNSPEC


@dataclass(frozen=True)
class WireConfig:
    """How qctl's wire client connects to a context's brokers."""

    ssl_context: ssl.SSLContext | None = None
    sasl: SaslCredentials | None = None
    client_id: str = DEFAULT_CLIENT_ID
    software_name: str = "qctl"
    software_version: str = __version__
    sockets: SocketOptions = field(default_factory=SocketOptions)


#: A plain connection (the dev brokers, and tests).
PLAINTEXT = WireConfig()


def wire_config(settings: Mapping[str, Any]) -> WireConfig | None:
    """How to connect with a context's ``kafka`` settings, or None when the wire client
    cannot connect exactly as librdkafka would (the caller then leaves the work to
    librdkafka; the reason is logged at debug). Refuses, as librdkafka's configuration
    does, verification turned off without ``insecure: true``."""
    decided = decide(settings)
    if isinstance(decided, Handover):
        log.debug("qctl's wire client steps aside for librdkafka: %s", decided)
        return None
    return decided


#: Decisions made in this process, by properties: building a TLS context that loads the
#: system's CAs takes tens of milliseconds, and a command asks several times.
_DECIDED: dict[tuple[tuple[str, str], ...], WireConfig | Handover] = {}


def forget_decisions() -> None:
    """Drop the decisions kept for this process (for tests that change the files or the
    probe paths behind them)."""
    _DECIDED.clear()


def decide(settings: Mapping[str, Any]) -> WireConfig | Handover:
    """``wire_config``'s answer, with the reason when it is a hand-over."""
    props = librdkafka_properties(settings)
    key = tuple(props.items())
    found = _DECIDED.get(key)
    if found is None:
        try:
            found = _decide(props)
        except WireUnsupportedSettings as exc:
            found = exc.handover
        _DECIDED[key] = found
    return found


def librdkafka_properties(settings: Mapping[str, Any]) -> dict[str, str]:
    """The librdkafka properties of a context section as librdkafka gets them: qctl's own
    keys dropped, values as text (booleans as true/false), ``insecure`` applied."""
    props: dict[str, str] = {}
    for key, value in settings.items():
        if key in QCTL_KEYS:
            continue
        props[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    security.apply_kafka_verification(props, settings)
    return props


def _decide(props: dict[str, str]) -> WireConfig:
    protocol = _enum(props, "security.protocol", "plaintext", _PROTOCOLS)
    tls = protocol in ("ssl", "sasl_ssl")
    sasl = protocol.startswith("sasl")
    for name in props:
        _check_known(name, tls, sasl)
    if _enum(props, "api.version.request", "true", _TRUE | _FALSE) in _FALSE:
        _hand_over("api.version.request", "the wire client always asks ApiVersions first")
    if (
        _enum(
            props,
            "client.dns.lookup",
            "use_all_dns_ips",
            {"use_all_dns_ips", "resolve_canonical_bootstrap_servers_only"},
        )
        != "use_all_dns_ips"
    ):
        _hand_over("client.dns.lookup", "canonical bootstrap names are not resolved here")
    return WireConfig(
        ssl_context=_tls_context(props) if tls else None,
        sasl=_sasl(props) if sasl else None,
        client_id=props.get("client.id", DEFAULT_CLIENT_ID),
        software_name=sanitize_software(props.get("client.software.name", "qctl")),
        software_version=sanitize_software(props.get("client.software.version", __version__)),
        sockets=_sockets(props),
    )


def _check_known(name: str, tls: bool, sasl: bool) -> None:
    row = CONTRACT.get(name)
    if row is None:
        if name.startswith(_MECHANISM_ONLY) or not name.startswith(CONNECTION_FAMILIES):
            return
        _hand_over(name, "not a property the wire client knows")
    if row.applies is Applies.TLS and not tls:
        return
    if row.applies is Applies.SASL and not sasl:
        return
    if row.effect is Effect.HANDOVER:
        _hand_over(name, row.note)


def _hand_over(name: str, reason: str) -> NoReturn:
    raise WireUnsupportedSettings(Handover(name, reason))


# -- values, parsed as librdkafka parses them -------------------------------------------------
def _enum(props: Mapping[str, str], name: str, default: str, allowed: set[str]) -> str:
    value = props.get(name, default).lower()
    if value not in allowed:
        _hand_over(name, f"{props[name]!r} is not a value librdkafka takes")
    return value


def _flag(props: Mapping[str, str], name: str, default: bool) -> bool:
    value = _enum(props, name, "true" if default else "false", _TRUE | _FALSE)
    return value in _TRUE


def _int(props: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = props.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        _hand_over(name, f"{text!r} is not a value librdkafka takes ({low}..{high})")
    return value


def sanitize_software(text: str) -> str:
    """``client.software.*`` as librdkafka sends them (``rd_kafka_sw_str_sanitize_inplace``):
    characters other than letters, digits, ``-`` and ``.`` become ``-``, and the text
    starts and ends with a letter or digit, as the broker requires (KIP-511)."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "-" for c in text)
    return out.strip("-.")


def _sockets(props: Mapping[str, str]) -> SocketOptions:
    def seconds(name: str, low: int, high: int) -> float | None:
        if name not in props:
            return None
        return _int(props, name, 0, low, high) / 1000

    family = _enum(props, "broker.address.family", "any", set(_FAMILIES))
    return SocketOptions(
        request_timeout=seconds("socket.timeout.ms", 10, 300000),
        setup_timeout=seconds("socket.connection.setup.timeout.ms", 1000, 2147483647),
        api_versions_timeout=_int(props, "api.version.request.timeout.ms", 10000, 1, 300000) / 1000,
        keepalive=_flag(props, "socket.keepalive.enable", False),
        nodelay=_flag(props, "socket.nagle.disable", True),
        send_buffer=_int(props, "socket.send.buffer.bytes", 0, 0, 100000000),
        receive_buffer=_int(props, "socket.receive.buffer.bytes", 0, 0, 100000000),
        family=_FAMILIES[family],
    )


# -- SASL ---------------------------------------------------------------------------------------
def _sasl(props: Mapping[str, str]) -> SaslCredentials:
    """``rd_kafka_sasl_select_provider``: the mechanism compared case-sensitively; PLAIN
    and SCRAM need both a user name and a password. The last of ``sasl.mechanism`` and
    its alias ``sasl.mechanisms`` in the section wins, as when librdkafka sets them in
    order."""
    mechanism = "GSSAPI"
    for name, value in props.items():
        if name in ("sasl.mechanism", "sasl.mechanisms"):
            mechanism = value
    if mechanism not in MECHANISMS:
        _hand_over("sasl.mechanism", f"the wire client does not speak {mechanism}")
    username, password = props.get("sasl.username"), props.get("sasl.password")
    if username is None or password is None:
        _hand_over("sasl.username", "librdkafka requires sasl.username and sasl.password")
    return SaslCredentials(mechanism, username, password)


# -- TLS ----------------------------------------------------------------------------------------
def tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """A fresh TLS context from a context section's ``ssl.*`` properties, built as
    librdkafka builds its own (``rd_kafka_ssl_ctx_init``); ``insecure`` applied. Raises
    ``WireUnsupportedSettings`` where Python's ssl cannot do the same, and ``ssl.SSLError``
    / ``OSError`` where librdkafka would refuse the settings too."""
    return _tls_context(librdkafka_properties(settings))


def _tls_context(props: Mapping[str, str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # librdkafka: TLS_client_method() with OpenSSL's defaults (SSLv3 off); Python's ssl
    # would otherwise start at TLS 1.2 with its own cipher list.
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    try:
        ctx.set_ciphers(props.get("ssl.cipher.suites", "DEFAULT"))
    except ssl.SSLError:
        _hand_over("ssl.cipher.suites", "librdkafka refuses it too (no cipher matches)")
    verify = _flag(props, "enable.ssl.certificate.verification", True)
    https = _enum(props, "ssl.endpoint.identification.algorithm", "https", {"https", "none"})
    ctx.check_hostname = verify and https == "https"
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if "ssl.curves.list" in props:
        _curves(ctx, props["ssl.curves.list"])
    try:
        _trust(ctx, props)
        _client_certificate(ctx, props)
    except (ssl.SSLError, OSError, ValueError) as exc:
        # librdkafka refuses such settings when it makes its client, with its own words.
        _hand_over(_tls_culprit(props), f"cannot be loaded ({exc})")
    return ctx


def _curves(ctx: ssl.SSLContext, curves: str) -> None:
    names = [c for c in curves.split(":") if c]
    if len(names) != 1:
        _hand_over("ssl.curves.list", "Python's ssl sets one curve, not a list")
    try:
        ctx.set_ecdh_curve(_NIST_CURVES.get(names[0], names[0]))
    except ValueError:
        _hand_over("ssl.curves.list", f"{names[0]!r} is not a curve Python's ssl can name")


def _trust(ctx: ssl.SSLContext, props: Mapping[str, str]) -> None:
    """``rd_kafka_ssl_set_certs``' CA part: ssl.ca.location (a directory when it is one)
    and ssl.ca.pem, both when both are set; with neither (or "probe"), the first of
    ``CA_PROBE_PATHS`` that loads, else OpenSSL's default paths; then ssl.crl.location."""
    location = props.get("ssl.ca.location")
    pem = props.get("ssl.ca.pem")
    if location and location != "probe":
        if os.path.isdir(location):
            ctx.load_verify_locations(capath=location)
        else:
            ctx.load_verify_locations(cafile=location)
    if pem:
        ctx.load_verify_locations(cadata=pem)
    if not pem and (not location or location == "probe") and not _probe_ca(ctx):
        ctx.set_default_verify_paths()
    crl = props.get("ssl.crl.location")
    if crl:
        ctx.load_verify_locations(cafile=crl)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _probe_ca(ctx: ssl.SSLContext) -> bool:
    for path in CA_PROBE_PATHS:
        try:
            if os.path.isdir(path):
                if not any(os.scandir(path)):
                    continue
                ctx.load_verify_locations(capath=path)
            elif os.path.exists(path):
                ctx.load_verify_locations(cafile=path)
            else:
                continue
        except (ssl.SSLError, OSError):
            continue
        return True
    return False


def _client_certificate(ctx: ssl.SSLContext, props: Mapping[str, str]) -> None:
    """The client certificate and key from exactly one certificate source and one key
    source, or from a keystore alone; any other combination hands over (librdkafka
    loads them one over the other, or refuses a key without its certificate)."""
    certs = [k for k in ("ssl.certificate.location", "ssl.certificate.pem") if props.get(k)]
    keys = [k for k in ("ssl.key.location", "ssl.key.pem") if props.get(k)]
    keystore = props.get("ssl.keystore.location")
    password = props.get("ssl.key.password")
    if keystore:
        if certs or keys:
            _hand_over("ssl.keystore.location", "set together with a certificate or key")
        if props.get("ssl.keystore.password") is None:
            _hand_over("ssl.keystore.password", "librdkafka requires it with a keystore")
        cert_pem, key_pem = _read_keystore(keystore, props["ssl.keystore.password"])
        with _in_memory(cert_pem) as cert_file, _in_memory(key_pem) as key_file:
            ctx.load_cert_chain(cert_file, key_file)
        return
    if not certs and not keys:
        return
    if len(certs) != 1 or len(keys) != 1:
        _hand_over((certs + keys)[0], "needs exactly one certificate and one key setting")
    with contextlib.ExitStack() as stack:
        cert_file = props.get("ssl.certificate.location") or stack.enter_context(
            _in_memory(props["ssl.certificate.pem"].encode())
        )
        key_file = props.get("ssl.key.location") or stack.enter_context(
            _in_memory(props["ssl.key.pem"].encode())
        )
        # "" rather than None: OpenSSL would prompt on the terminal for a passphrase,
        # where librdkafka's callback answers with nothing.
        ctx.load_cert_chain(cert_file, key_file, password or "")


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path to ``data`` held in memory only (a memfd), for OpenSSL calls that read
    files: certificates and keys given as PEM strings are never written to disk."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        _hand_over("ssl.key.pem", "in-memory files (memfd) are Linux-only")
    fd = create("qctl-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _read_keystore(path: str, password: str) -> tuple[bytes, bytes]:
    """(certificate chain, key) in PEM from a PKCS#12 file, as ``PKCS12_parse`` reads it
    for librdkafka: the certificate matching the key first, then the other certificates."""
    try:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            pkcs12,
        )
    except ImportError:
        _hand_over(
            "ssl.keystore.location",
            "reading PKCS#12 needs the cryptography package (pip install 'qctl[keystore]')",
        )
    with open(path, "rb") as file:
        data = file.read()
    key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() or None)
    if key is None or cert is None:
        raise ValueError("the keystore holds no certificate with its key")
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in [cert, *extra])
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return chain, key_pem


def _tls_culprit(props: Mapping[str, str]) -> str:
    for name in (
        "ssl.keystore.location",
        "ssl.certificate.location",
        "ssl.certificate.pem",
        "ssl.key.location",
        "ssl.key.pem",
        "ssl.crl.location",
        "ssl.ca.pem",
        "ssl.ca.location",
    ):
        if props.get(name):
            return name
    return "ssl.ca.location"


def shuffled_addresses(
    host: str, port: int, family: socket.AddressFamily
) -> list[tuple[socket.AddressFamily, Any]]:
    """A broker name's addresses as librdkafka uses them (``rd_getaddrinfo`` with
    AI_ADDRCONFIG, shuffled): (family, socket address), in the order to try them."""
    # An ASCII name as bytes (getaddrinfo takes both): a str is encoded with the "idna"
    # codec, whose import alone costs about 10 ms.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    infos = socket.getaddrinfo(
        name, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_ADDRCONFIG
    )
    found: list[tuple[socket.AddressFamily, Any]] = [(info[0], info[4]) for info in infos]
    random.shuffle(found)
    return found
