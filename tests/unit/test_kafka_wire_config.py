"""The connection contract (``wire.config``): one test per librdkafka property.

Each property either maps to what the wire client does (the TLS context, the SASL login,
socket options, the client id), is ignored because it does not change how a connection
is made, or hands the command to librdkafka (``Handover`` names it). The TLS material is
made here with ``cryptography``; tests/integration/test_connection_contract.py connects
with the same settings to real listeners.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from qctl.backends.kafka.wire import config as wc
from qctl.backends.kafka.wire.config import (
    CONTRACT,
    DEFAULT_CLIENT_ID,
    Effect,
    Handover,
    WireConfig,
    decide,
    wire_config,
)
from qctl.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent.parent
SASL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "alice",
    "sasl.password": "alice-secret",
}


@pytest.fixture(autouse=True)
def fresh_decisions() -> None:
    wc.forget_decisions()


@dataclass(frozen=True)
class Material:
    """A CA, a client certificate and key of it (plain and encrypted), and a keystore."""

    dir: Path
    ca: Path
    cert: Path
    key: Path
    encrypted_key: Path
    keystore: Path

    def text(self, path: Path) -> str:
        return path.read_text()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Material:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    out = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("contract test CA"))
        .issuer_name(name("contract test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("client"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    paths = {n: out / f"{n}.pem" for n in ("ca", "cert", "key", "encrypted-key")}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    paths["key"].write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    paths["encrypted-key"].write_bytes(
        key.private_bytes(pem, pkcs8, serialization.BestAvailableEncryption(b"key-secret"))
    )
    keystore = out / "client.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"client", key, cert, [ca], serialization.BestAvailableEncryption(b"p12-secret")
        )
    )
    return Material(out, paths["ca"], paths["cert"], paths["key"], paths["encrypted-key"], keystore)


def spoken(settings: dict[str, Any]) -> WireConfig:
    found = decide(settings)
    assert isinstance(found, WireConfig), found
    return found


def handed_over(settings: dict[str, Any], prop: str, reason: str = "") -> Handover:
    found = decide(settings)
    assert isinstance(found, Handover), found
    assert found.property == prop, found
    assert reason in found.reason, found
    assert wire_config(settings) is None
    return found


def subjects(ctx: ssl.SSLContext) -> list[str]:
    return [dict(x[0] for x in c["subject"])["commonName"] for c in ctx.get_ca_certs()]


# -- security.protocol ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("protocol", "tls_on", "sasl_on"),
    [
        ("plaintext", False, False),
        ("SSL", True, False),
        ("sasl_plaintext", False, True),
        ("Sasl_Ssl", True, True),
    ],
)
def test_security_protocol_any_case(protocol: str, tls_on: bool, sasl_on: bool) -> None:
    config = spoken({**SASL, "security.protocol": protocol})
    assert (config.ssl_context is not None) == tls_on
    assert (config.sasl is not None) == sasl_on


def test_security_protocol_unknown_hands_over() -> None:
    handed_over({"security.protocol": "tls"}, "security.protocol", "not a value")


def test_no_settings_is_plaintext_with_qctls_client_id() -> None:
    config = spoken({"bootstrap_servers": "h:9092"})
    assert config.ssl_context is None and config.sasl is None
    assert config.client_id == DEFAULT_CLIENT_ID == "qctl"


# -- the CA -----------------------------------------------------------------------------------
def test_ssl_ca_location_file(tls: Material) -> None:
    ctx = spoken({"security.protocol": "SSL", "ssl.ca.location": str(tls.ca)}).ssl_context
    assert ctx is not None
    assert subjects(ctx) == ["contract test CA"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def hashed_dir(tmp_path: Path, ca: Path) -> Path:
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca.read_bytes())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    return directory


def test_ssl_ca_location_directory_is_loaded_as_a_directory(tls: Material, tmp_path: Path) -> None:
    """The regression: a directory (valid for librdkafka) was opened as a file and the
    command died with IsADirectoryError."""
    directory = hashed_dir(tmp_path, tls.ca)
    ctx = spoken({"security.protocol": "SSL", "ssl.ca.location": str(directory)}).ssl_context
    assert ctx is not None
    assert ctx.cert_store_stats()["x509_ca"] == 0  # a capath loads lazily, at the handshake


def test_ssl_ca_location_missing_file_hands_over() -> None:
    handed_over(
        {"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"},
        "ssl.ca.location",
        "cannot be loaded",
    )


def test_ssl_ca_location_probe_takes_the_first_path_that_loads(
    tls: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    paths = (str(tmp_path / "missing.pem"), str(empty), str(garbage), str(tls.ca), "/etc/x")
    monkeypatch.setattr(wc, "CA_PROBE_PATHS", paths)
    for settings in ({"ssl.ca.location": "probe"}, {}):
        ctx = spoken({"security.protocol": "SSL", **settings}).ssl_context
        assert ctx is not None
        assert subjects(ctx) == ["contract test CA"]


def test_without_a_ca_and_nothing_to_probe_openssls_default_paths_are_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(wc, "CA_PROBE_PATHS", (str(tmp_path / "missing"),))
    called = []
    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", lambda self: called.append(1))
    spoken({"security.protocol": "SSL"})
    assert called == [1]


def test_ssl_ca_pem_string(tls: Material) -> None:
    ctx = spoken({"security.protocol": "SSL", "ssl.ca.pem": tls.text(tls.ca)}).ssl_context
    assert ctx is not None and subjects(ctx) == ["contract test CA"]


def test_ssl_ca_pem_and_location_are_both_loaded(tls: Material) -> None:
    settings = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls.ca),
        "ssl.ca.pem": tls.text(tls.cert),  # any certificate will do to count them
    }
    ctx = spoken(settings).ssl_context
    assert ctx is not None
    assert ctx.cert_store_stats()["x509"] == 2


def test_ssl_ca_pem_garbage_hands_over() -> None:
    handed_over({"security.protocol": "SSL", "ssl.ca.pem": "nope"}, "ssl.ca.pem")


def test_ssl_crl_location_turns_on_the_leaf_check(tls: Material, tmp_path: Path) -> None:
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(tls))
    settings = {"security.protocol": "SSL", "ssl.ca.location": str(tls.ca)}
    ctx = spoken({**settings, "ssl.crl.location": str(crl)}).ssl_context
    assert ctx is not None
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert ctx.cert_store_stats()["crl"] == 1


def make_crl(tls: Material) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    # An empty CRL signed by a throw-away key: loading it is what is tested here.
    from cryptography.hazmat.primitives.asymmetric import ec

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


# -- client certificates -----------------------------------------------------------------------
def test_ssl_certificate_and_key_location(tls: Material) -> None:
    spoken(
        {
            "security.protocol": "SSL",
            "ssl.certificate.location": str(tls.cert),
            "ssl.key.location": str(tls.key),
        }
    )


def test_ssl_key_password_opens_an_encrypted_key(tls: Material) -> None:
    settings = {
        "security.protocol": "SSL",
        "ssl.certificate.location": str(tls.cert),
        "ssl.key.location": str(tls.encrypted_key),
    }
    spoken({**settings, "ssl.key.password": "key-secret"})
    handed_over({**settings, "ssl.key.password": "wrong"}, "ssl.certificate.location")
    # Without a password nothing prompts on the terminal: librdkafka fails, so hand over.
    handed_over(settings, "ssl.certificate.location")


def test_ssl_certificate_and_key_pem_are_never_written_to_disk(
    tls: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real_open = open

    def spy(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(m in mode for m in "wax+"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    spoken(
        {
            "security.protocol": "SSL",
            "ssl.certificate.pem": tls.text(tls.cert),
            "ssl.key.pem": tls.text(tls.encrypted_key),
            "ssl.key.password": "key-secret",
        }
    )
    assert written == []


def test_ssl_certificate_pem_with_a_key_location(tls: Material) -> None:
    spoken(
        {
            "security.protocol": "SSL",
            "ssl.certificate.pem": tls.text(tls.cert),
            "ssl.key.location": str(tls.key),
        }
    )


@pytest.mark.parametrize(
    ("given", "culprit"),
    [
        (("ssl.certificate.location",), "ssl.certificate.location"),
        (("ssl.key.location",), "ssl.key.location"),
        (("ssl.certificate.pem",), "ssl.certificate.pem"),
        (("ssl.key.pem",), "ssl.key.pem"),
        (("ssl.certificate.location", "ssl.certificate.pem", "ssl.key.location"),
         "ssl.certificate.location"),
    ],
)  # fmt: skip
def test_a_certificate_without_its_key_or_two_of_them_hand_over(
    tls: Material, given: tuple[str, ...], culprit: str
) -> None:
    values = {
        "ssl.certificate.location": str(tls.cert),
        "ssl.certificate.pem": tls.text(tls.cert),
        "ssl.key.location": str(tls.key),
        "ssl.key.pem": tls.text(tls.key),
    }
    settings = {"security.protocol": "SSL", **{k: values[k] for k in given}}
    handed_over(settings, culprit, "exactly one certificate and one key")


def test_ssl_keystore_location_and_password(tls: Material) -> None:
    settings = {"security.protocol": "SSL", "ssl.keystore.location": str(tls.keystore)}
    spoken({**settings, "ssl.keystore.password": "p12-secret"})
    handed_over({**settings, "ssl.keystore.password": "wrong"}, "ssl.keystore.location")
    handed_over(settings, "ssl.keystore.password", "requires it")
    handed_over(
        {**settings, "ssl.keystore.password": "p12-secret", "ssl.key.location": str(tls.key)},
        "ssl.keystore.location",
        "together with",
    )


def test_ssl_keystore_without_the_cryptography_package_hands_over(
    tls: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.serialization", None)
    settings = {
        "security.protocol": "SSL",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.keystore.password": "p12-secret",
    }
    handed_over(settings, "ssl.keystore.location", "cryptography")


# -- verification -------------------------------------------------------------------------------
def test_ssl_endpoint_identification_algorithm() -> None:
    ctx = spoken({"security.protocol": "SSL"}).ssl_context
    assert ctx is not None and ctx.check_hostname  # librdkafka's default is https
    ctx = spoken(
        {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "HTTPS"}
    ).ssl_context
    assert ctx is not None and ctx.check_hostname
    with pytest.raises(ConfigError, match="insecure: true"):
        decide({"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "none"})
    handed_over(
        {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "dns"},
        "ssl.endpoint.identification.algorithm",
    )


@pytest.mark.parametrize("off", [False, "false", "F", "0"])
def test_verification_off_in_any_of_librdkafkas_spellings_needs_insecure(off: object) -> None:
    settings = {"security.protocol": "SSL", "enable.ssl.certificate.verification": off}
    with pytest.raises(ConfigError, match="insecure: true"):
        decide(settings)
    ctx = spoken({**settings, "insecure": True}).ssl_context
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE


def test_enable_ssl_certificate_verification_and_insecure() -> None:
    ctx = spoken({"security.protocol": "SSL", "insecure": True}).ssl_context
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    ctx = spoken(
        {"security.protocol": "SSL", "enable.ssl.certificate.verification": "t"}
    ).ssl_context
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED


def test_tls_defaults_are_openssls_as_in_librdkafka() -> None:
    ctx = spoken({"security.protocol": "SSL"}).ssl_context
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.MINIMUM_SUPPORTED
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    default.set_ciphers("DEFAULT")
    assert [c["name"] for c in ctx.get_ciphers()] == [c["name"] for c in default.get_ciphers()]


def test_ssl_cipher_suites() -> None:
    ctx = spoken(
        {"security.protocol": "SSL", "ssl.cipher.suites": "ECDHE-RSA-AES256-GCM-SHA384"}
    ).ssl_context
    assert ctx is not None
    names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert names == ["ECDHE-RSA-AES256-GCM-SHA384"]
    handed_over({"security.protocol": "SSL", "ssl.cipher.suites": "NOPE"}, "ssl.cipher.suites")


@pytest.mark.parametrize("curve", ["P-256", "prime256v1", "secp384r1", "X25519"])
def test_ssl_curves_list_of_one_curve(curve: str) -> None:
    spoken({"security.protocol": "SSL", "ssl.curves.list": curve})


def test_ssl_curves_list_of_several_or_unknown_hands_over() -> None:
    handed_over(
        {"security.protocol": "SSL", "ssl.curves.list": "P-256:P-384"}, "ssl.curves.list", "list"
    )
    handed_over({"security.protocol": "SSL", "ssl.curves.list": "nocurve"}, "ssl.curves.list")


@pytest.mark.parametrize(
    "prop",
    [
        "ssl.sigalgs.list",
        "ssl.providers",
        "ssl.engine.location",
        "ssl.engine.id",
        "ssl.certificate.verify_cb",
    ],
)
def test_tls_properties_python_cannot_honour_hand_over(prop: str) -> None:
    handed_over({"security.protocol": "SSL", prop: "x"}, prop)
    # librdkafka reads ssl.* only with a TLS protocol: without one they change nothing.
    spoken({"security.protocol": "PLAINTEXT", prop: "x"})


def test_ssl_ca_certificate_stores_is_windows_only() -> None:
    spoken({"security.protocol": "SSL", "ssl.ca.certificate.stores": "Root,CA"})


# -- SASL ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_mechanisms_spoken(mechanism: str) -> None:
    config = spoken({**SASL, "sasl.mechanism": mechanism})
    assert config.sasl is not None
    assert (config.sasl.mechanism, config.sasl.username) == (mechanism, "alice")
    assert "alice-secret" not in repr(config.sasl)


@pytest.mark.parametrize(
    ("mechanism", "reason"),
    [
        ("GSSAPI", "GSSAPI"),
        ("OAUTHBEARER", "OAUTHBEARER"),
        ("SCRAM-SHA-1", "SCRAM-SHA-1"),
        # librdkafka compares mechanism names case-sensitively and refuses this one.
        ("scram-sha-512", "scram-sha-512"),
    ],
)
def test_sasl_mechanisms_not_spoken_hand_over(mechanism: str, reason: str) -> None:
    handed_over({**SASL, "sasl.mechanism": mechanism}, "sasl.mechanism", reason)


def test_sasl_mechanism_defaults_to_gssapi() -> None:
    settings = {k: v for k, v in SASL.items() if k != "sasl.mechanism"}
    handed_over(settings, "sasl.mechanism", "GSSAPI")


def test_sasl_mechanisms_alias_and_the_last_one_wins() -> None:
    settings = {k: v for k, v in SASL.items() if k != "sasl.mechanism"}
    config = spoken({**settings, "sasl.mechanisms": "PLAIN"})
    assert config.sasl is not None and config.sasl.mechanism == "PLAIN"
    config = spoken({**SASL, "sasl.mechanisms": "SCRAM-SHA-256"})
    assert config.sasl is not None and config.sasl.mechanism == "SCRAM-SHA-256"


@pytest.mark.parametrize("missing", ["sasl.username", "sasl.password"])
def test_sasl_username_and_password_are_both_required(missing: str) -> None:
    settings = {k: v for k, v in SASL.items() if k != missing}
    handed_over(settings, "sasl.username", "sasl.username and sasl.password")


@pytest.mark.parametrize(
    "prop",
    [
        "sasl.kerberos.service.name",
        "sasl.oauthbearer.config",
        "enable.sasl.oauthbearer.unsecure.jwt",
        "https.ca.location",
        "https.ca.pem",
    ],
)
def test_properties_of_mechanisms_handed_over_anyway_change_nothing(prop: str) -> None:
    spoken({**SASL, prop: "x"})


def test_sasl_settings_without_a_sasl_protocol_change_nothing() -> None:
    assert spoken({"sasl.mechanism": "GSSAPI"}).sasl is None


# -- client id, software, sockets, addresses ---------------------------------------------------
def test_client_id() -> None:
    assert spoken({"client.id": "billing-ops"}).client_id == "billing-ops"


def test_client_software_name_and_version_as_librdkafka_sanitises_them() -> None:
    config = spoken({"client.software.name": "my app!", "client.software.version": "v1.0_b"})
    assert (config.software_name, config.software_version) == ("my-app", "v1.0-b")
    assert (spoken({}).software_name, spoken({}).software_version) == ("qctl", wc.__version__)


def test_socket_timeouts() -> None:
    opts = spoken({}).sockets
    assert opts.request_timeout is None and opts.setup_timeout is None
    opts = spoken(
        {
            "socket.timeout.ms": 1500,
            "socket.connection.setup.timeout.ms": "2000",
            "api.version.request.timeout.ms": 700,
        }
    ).sockets
    assert (opts.request_timeout, opts.setup_timeout, opts.api_versions_timeout) == (
        1.5,
        2.0,
        0.7,
    )


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("socket.timeout.ms", "5"),  # below librdkafka's range (10..300000)
        ("socket.connection.setup.timeout.ms", "999"),
        ("socket.send.buffer.bytes", "-1"),
        ("socket.receive.buffer.bytes", "lots"),
        ("api.version.request.timeout.ms", "0"),
        ("socket.keepalive.enable", "maybe"),
    ],
)
def test_values_librdkafka_refuses_hand_over(prop: str, value: str) -> None:
    handed_over({prop: value}, prop, "not a value librdkafka takes")


def test_socket_keepalive_and_nagle() -> None:
    opts = spoken({}).sockets
    assert (opts.keepalive, opts.nodelay) == (False, True)  # librdkafka 2.x defaults
    opts = spoken({"socket.keepalive.enable": True, "socket.nagle.disable": "false"}).sockets
    assert (opts.keepalive, opts.nodelay) == (True, False)


def test_socket_buffers() -> None:
    opts = spoken({"socket.send.buffer.bytes": 65536, "socket.receive.buffer.bytes": "131072"})
    assert (opts.sockets.send_buffer, opts.sockets.receive_buffer) == (65536, 131072)


@pytest.mark.parametrize(
    ("value", "family"),
    [("any", socket.AF_UNSPEC), ("v4", socket.AF_INET), ("V6", socket.AF_INET6)],
)
def test_broker_address_family(value: str, family: socket.AddressFamily) -> None:
    assert spoken({"broker.address.family": value}).sockets.family == family


def test_broker_address_family_unknown_hands_over() -> None:
    handed_over({"broker.address.family": "v5"}, "broker.address.family")


def test_client_dns_lookup() -> None:
    spoken({"client.dns.lookup": "use_all_dns_ips"})
    handed_over(
        {"client.dns.lookup": "resolve_canonical_bootstrap_servers_only"}, "client.dns.lookup"
    )


def test_api_version_request_false_hands_over() -> None:
    spoken({"api.version.request": "true", "broker.version.fallback": "0.10.0"})
    handed_over({"api.version.request": False}, "api.version.request")


@pytest.mark.parametrize(
    "prop", ["plugin.library.paths", "interceptors", "socket_cb", "resolve_cb", "open_cb"]
)
def test_plugins_and_callbacks_hand_over(prop: str) -> None:
    handed_over({prop: "x"}, prop)


@pytest.mark.parametrize(
    "prop",
    [
        "reconnect.backoff.ms",
        "connections.max.idle.ms",
        "socket.max.fails",
        "broker.address.ttl",
        "client.rack",
        "api.version.fallback.ms",
        # other families: producer, consumer, metadata, logging
        "linger.ms",
        "group.id",
        "topic.metadata.refresh.interval.ms",
        "debug",
        "statistics.interval.ms",
    ],
)
def test_properties_that_do_not_change_connecting_are_ignored(prop: str) -> None:
    spoken({prop: "1"})


@pytest.mark.parametrize("prop", ["ssl.ca.locaton", "socket.nodelay", "sasl.user", "client.foo"])
def test_unknown_names_in_connection_families_hand_over(prop: str) -> None:
    settings = {**SASL, "ssl.ca.location": "probe", prop: "x"}
    handed_over(settings, prop, "not a property")


def test_qctl_keys_are_not_librdkafka_properties() -> None:
    spoken({"bootstrap_servers": "h:1", "dlq_patterns": ["*.dlq"], "dlq_group": "g"})


# -- the table in docs/security.md ----------------------------------------------------------------
def test_every_property_of_the_contract_is_in_the_docs_table() -> None:
    doc = (REPO / "docs" / "security.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
        for line in doc.splitlines()
        if line.startswith("| `")
    }
    for name, row in CONTRACT.items():
        assert name in rows, name
        assert rows[name].startswith(row.effect.value), (name, rows[name])
    assert {e.value for e in Effect} == {
        "identical",
        "hands the command to librdkafka",
        "no effect on connecting",
    }


# -- every row of the contract ---------------------------------------------------------------------
def settings_reading(row_applies: wc.Applies) -> dict[str, Any]:
    """Settings under which librdkafka reads a property of ``row_applies``."""
    return (
        {**SASL, "sasl.mechanism": "PLAIN"}
        if row_applies is not wc.Applies.TLS
        else {"security.protocol": "SSL"}
    )


HANDOVERS = [name for name, row in CONTRACT.items() if row.effect is Effect.HANDOVER]
NO_EFFECT = [name for name, row in CONTRACT.items() if row.effect is Effect.NONE]


@pytest.mark.parametrize("prop", HANDOVERS)
def test_every_handover_row_hands_over(prop: str) -> None:
    handed_over({**settings_reading(CONTRACT[prop].applies), prop: "x"}, prop)


@pytest.mark.parametrize("prop", NO_EFFECT)
def test_every_no_effect_row_changes_nothing(prop: str) -> None:
    settings = settings_reading(CONTRACT[prop].applies)
    with_it, without = spoken({**settings, prop: "1"}), spoken(settings)
    # TLS contexts compare by identity: compare what is in them apart.
    assert replace(with_it, ssl_context=None) == replace(without, ssl_context=None)
    assert with_it.ssl_context is not None and without.ssl_context is not None
    assert with_it.ssl_context.get_ca_certs() == without.ssl_context.get_ca_certs()
