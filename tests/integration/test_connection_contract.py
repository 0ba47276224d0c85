"""One connection contract: every Kafka command, whatever way the context gives its CA.

librdkafka takes ``ssl.ca.location`` as a file or a hashed directory, and ``ssl.ca.pem``
as a string; qctl's own protocol client (``kafka.wire``) must connect the same way or
step aside before connecting (``wire.config``). Every Kafka command runs here against the
SASL_SSL dev listener with the CA given each of the three ways; each must exit 0 and
give the same answer. The topics and groups are made once for the module, with copies per
way where a command changes them.

Further down: the client-certificate settings against the listener that requires one,
and SASL re-authentication (KIP-368) against the listener with short sessions.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.secure_brokers import SecureBrokers

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

WAYS = ("ca-file", "ca-dir", "ca-pem")
#: Fields that differ between two runs of the same command (times, ids, processes, and
#: the cluster-wide counts that tests running alongside change).
VOLATILE = {
    "counts",
    "by_age",
    "id",
    "created",
    "updated",
    "pid",
    "host",
    "snapshot",
    "sampled_at",
    "context",
    "age_seconds",
    "time_lag_seconds",
    "window_seconds",
    "eta_seconds",
    "consume_rate",
    "produce_rate",
    "committed_timestamp",
    "span_seconds",
}
MAIN_PARTITIONS = 100  # enough for the wire readers of many partitions (WIRE_FROM)


def hashed_ca_dir(ca: Path, into: Path) -> Path:
    """A c_rehash-style CA directory (``<subject hash>.0``), as /etc/ssl/certs is."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, into / "ca.pem")
    subprocess.run(["openssl", "rehash", str(into)], check=True, capture_output=True)
    assert any(p.name.endswith(".0") for p in into.iterdir())
    return into


@dataclass(frozen=True)
class Contract:
    """The module's resources: a unique prefix and one context per way of giving the CA."""

    prefix: str
    contexts: dict[str, dict[str, Any]]

    def topic(self, name: str, way: str = "") -> str:
        return f"{self.prefix}.{way}.{name}" if way else f"{self.prefix}.{name}"


def admin_conf(settings: dict[str, Any]) -> dict[str, Any]:
    from qctl.backends.kafka.client import client_config

    conf = client_config(settings, 20)
    conf.pop("logger", None)
    return conf


@pytest.fixture(scope="module")
def contract(
    secure_brokers: SecureBrokers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Contract]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    ca = secure_brokers.tls / "ca.pem"
    ca_dir = hashed_ca_dir(ca, tmp_path_factory.mktemp("ca") / "certs")
    base = secure_brokers.kafka()
    without_ca = {k: v for k, v in base.items() if k != "ssl.ca.location"}
    contexts = {
        "ca-file": {**without_ca, "ssl.ca.location": str(ca)},
        "ca-dir": {**without_ca, "ssl.ca.location": str(ca_dir)},
        "ca-pem": {**without_ca, "ssl.ca.pem": ca.read_text()},
    }
    made = Contract(f"contract-{uuid.uuid4().hex[:8]}", contexts)
    conf = admin_conf(base)
    admin = AdminClient(conf)
    partitions = {made.topic("main"): MAIN_PARTITIONS, made.topic("src"): 3}
    partitions[made.topic("shared.dlq")] = 2
    for way in WAYS:
        for name in ("dst", "work", "prod", "drain.dlq", "redrive.dlq", "purge.dlq"):
            partitions[made.topic(name, way)] = 2
    futures = admin.create_topics([NewTopic(t, n, 1) for t, n in partitions.items()])
    for future in futures.values():
        future.result(30)
    try:
        producer = Producer(conf)
        for i in range(3 * MAIN_PARTITIONS):
            producer.produce(made.topic("main"), key=f"k{i}", value=f"m{i}")
        for i in range(6):
            producer.produce(made.topic("src"), key=f"s{i}", value=f"src-{i}")
        dlqs = [made.topic("shared.dlq")] + [
            made.topic(name, way)
            for way in WAYS
            for name in ("drain.dlq", "redrive.dlq", "purge.dlq")
        ]
        for topic in dlqs:
            for i in range(4):
                producer.produce(
                    topic, key=f"d{i}", value=f"dead-{i}", headers=[("reason", b"test")]
                )
        assert producer.flush(30) == 0
        # A group that read about half of every partition, and a copy per way to delete.
        commits = [TopicPartition(made.topic("main"), p, 1) for p in range(MAIN_PARTITIONS)]
        for group in [made.topic("g")] + [made.topic("del", way) for way in WAYS]:
            consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
            consumer.commit(offsets=commits, asynchronous=False)
            consumer.close()
        yield made
    finally:
        admin.delete_topics(list(partitions), operation_timeout=30)
        groups = [made.topic("g")] + [made.topic(n, w) for w in WAYS for n in ("del", "c")]
        admin.delete_consumer_groups(groups, request_timeout=30)


@pytest.fixture
def contexts(contract: Contract, isolated_config: Path) -> Contract:
    isolated_config.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "current_context": "ca-file",
        "contexts": {w: {"kafka": s} for w, s in contract.contexts.items()},
    }
    isolated_config.write_text(yaml.safe_dump(data, sort_keys=False))
    isolated_config.chmod(0o600)
    return contract


def qctl(*args: str, context: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qctl", "--context", context, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stable(value: Any) -> Any:
    """``value`` without the fields that differ between runs; numbers that do (a lag in
    seconds) are kept as whether they are there."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    stdin: str | None = None
    #: JSON lines whose order between partitions is not fixed.
    unordered: bool = False


COMMANDS = [
    Command("cluster-info", ("cluster", "info", "-b", "kafka", "-o", "json")),
    Command("lag", ("lag", "-b", "kafka", "-g", "{g}", "-o", "json")),
    Command("offsets-show", ("offsets", "show", "-g", "{g}", "-o", "json")),
    Command(
        "offsets-reset",
        ("offsets", "reset", "-g", "{g}", "-t", "{main}", "--to-earliest", "-o", "json"),
    ),
    Command(
        "offsets-delete",
        ("offsets", "delete", "-g", "{del}", "-t", "{main}", "--execute", "--yes", "-o", "json"),
    ),
    Command("replay", ("replay", "kafka:{src}", "--to", "kafka:{dst}", "--yes", "-o", "json")),
    Command("dlq-inspect", ("dlq", "inspect", "kafka:{shared_dlq}", "-o", "json")),
    Command("dlq-peek", ("dlq", "peek", "kafka:{shared_dlq}", "-o", "jsonl")),
    Command(
        "dlq-drain",
        ("dlq", "drain", "kafka:{drain}", "--to-file", "{file}", "--yes", "-o", "json"),
    ),
    Command(
        "dlq-redrive",
        ("dlq", "redrive", "kafka:{redrive}", "--to", "kafka:{work}", "--yes", "-o", "json"),
    ),
    Command("dlq-purge", ("dlq", "purge", "kafka:{purge}", "--yes", "-o", "json")),
    Command("consume", ("consume", "kafka:{src}", "-n", "6", "-o", "jsonl"), unordered=True),
    Command("produce", ("produce", "kafka:{prod}"), stdin="p1\np2\np3\n"),
]


#: Commands that write to a topic of their way, and which: read back and compared too.
WRITES_TO = {"replay": "dst", "dlq-redrive": "work", "produce": "prod"}


def run(contract: Contract, command: Command, way: str, tmp_path: Path) -> tuple[Any, ...]:
    """The command's answer with the CA given ``way``, the names of this way's own
    resources written as ``{way}`` so that the answers compare."""
    names = {
        "g": contract.topic("g"),
        "main": contract.topic("main"),
        "src": contract.topic("src"),
        "shared_dlq": contract.topic("shared.dlq"),
        "del": contract.topic("del", way),
        "dst": contract.topic("dst", way),
        "work": contract.topic("work", way),
        "prod": contract.topic("prod", way),
        "drain": contract.topic("drain.dlq", way),
        "redrive": contract.topic("redrive.dlq", way),
        "purge": contract.topic("purge.dlq", way),
        "file": str(tmp_path / f"{way}.jsonl"),
    }
    args = [a.format(**names) for a in command.args]
    proc = qctl(*args, context=way, stdin=command.stdin)
    assert proc.returncode == 0, f"{way}: qctl {' '.join(args)}: {proc.stderr}"
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    out = proc.stdout.replace(f".{way}.", ".{way}.").replace(f"{way}.jsonl", "{way}.jsonl")
    if command.args[-1] == "jsonl":
        lines = [json.dumps(stable(json.loads(line)), sort_keys=True) for line in out.splitlines()]
        answer: Any = sorted(lines) if command.unordered else lines
    elif command.args[-1] == "json":
        answer = stable(json.loads(out))
    else:
        answer = out
    extra: Any = None
    if command.name == "dlq-drain":
        extra = [stable(json.loads(line))["value"] for line in (tmp_path / f"{way}.jsonl").open()]
    elif command.name in ("replay", "dlq-redrive", "produce"):
        target = names[
            "dst"
            if command.name == "replay"
            else "work"
            if command.name == "dlq-redrive"
            else "prod"
        ]
        read = qctl(
            "consume", f"kafka:{target}", "-n", "1000", "--timeout", "5", "-o", "jsonl", context=way
        )
        extra = sorted(json.loads(line)["value"] for line in read.stdout.splitlines())
    return answer, extra


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_kafka_command_gives_one_answer_whatever_the_ca_setting(
    contexts: Contract, command: Command, tmp_path: Path
) -> None:
    answers = {way: run(contexts, command, way, tmp_path) for way in WAYS}
    assert answers["ca-dir"] == answers["ca-file"], command.name
    assert answers["ca-pem"] == answers["ca-file"], command.name
    answer, extra = answers["ca-file"]
    if command.name == "cluster-info":
        (info,) = answer
        assert info["version"] and info["warnings"] == [], info
        assert info["features"]["kraft"] is True
    elif command.name in ("lag", "offsets-show"):
        assert contexts.topic("g") in json.dumps(answer)
    elif command.name in ("replay", "dlq-redrive", "produce", "dlq-drain"):
        assert extra, command.name


def test_a_ca_directory_serves_cluster_info_lag_and_offsets_show(contexts: Contract) -> None:
    """The reported crash: with ``ssl.ca.location`` a directory, the wire client opened it
    as a file: `cluster info` exited 3, `lag` and `offsets show` 1, with an unexpected
    IsADirectoryError (and `lag` first printed that there were no groups)."""
    group = contexts.topic("g")
    for args in (
        ("cluster", "info", "-b", "kafka"),
        ("lag", "-b", "kafka", "-g", group),
        ("offsets", "show", "-g", group),
    ):
        proc = qctl(*args, context="ca-dir")
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
        assert "IsADirectoryError" not in proc.stderr
        assert "no consumer groups" not in proc.stdout


# -- client certificates ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keystore(secure_brokers: SecureBrokers, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev client certificate and key as a PKCS#12 keystore (password p12-secret)."""
    out = tmp_path_factory.mktemp("p12") / "client.p12"
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-in", secure_brokers.file("client.pem"),
         "-inkey", secure_brokers.file("client.key"), "-certfile", secure_brokers.file("ca.pem"),
         "-out", str(out), "-passout", "pass:p12-secret"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


CERT_WAYS = ("cert-files", "cert-pem", "keystore", "no-cert")


@pytest.fixture
def cert_contexts(
    secure_brokers: SecureBrokers, keystore: Path, isolated_config: Path
) -> SecureBrokers:
    secure_brokers.require_listener(secure_brokers.mtls_port, "Kafka client-certificate")
    cert, key = secure_brokers.file("client.pem"), secure_brokers.file("client.key")
    k = secure_brokers.kafka_cert
    contexts = {
        "cert-files": k(**{"ssl.certificate.location": cert, "ssl.key.location": key}),
        "cert-pem": k(
            **{"ssl.certificate.pem": Path(cert).read_text(), "ssl.key.pem": Path(key).read_text()}
        ),
        "keystore": k(
            **{"ssl.keystore.location": str(keystore), "ssl.keystore.password": "p12-secret"}
        ),
        "no-cert": k(),
    }
    isolated_config.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "current_context": "cert-files",
        "contexts": {n: {"kafka": s} for n, s in contexts.items()},
    }
    isolated_config.write_text(yaml.safe_dump(data, sort_keys=False))
    isolated_config.chmod(0o600)
    return secure_brokers


def test_client_certificates_from_files_pem_strings_and_a_keystore(
    cert_contexts: SecureBrokers, contract: Contract
) -> None:
    """The wire client presents the client certificate however it is given: the broker
    version (read only over the wire) and the group's offsets come back the same."""
    group = contract.topic("g")
    answers = {}
    for way in CERT_WAYS[:3]:
        info = qctl("cluster", "info", "-b", "kafka", "-o", "json", context=way)
        assert info.returncode == 0, (way, info.stderr)
        (found,) = json.loads(info.stdout)
        assert found["version"] and found["warnings"] == [], (way, found)
        shown = qctl("offsets", "show", "-g", group, "-o", "json", context=way)
        assert shown.returncode == 0, (way, shown.stderr)
        answers[way] = (stable(found), stable(json.loads(shown.stdout)))
    assert answers["cert-pem"] == answers["cert-files"] == answers["keystore"]
    # Without a certificate the listener refuses, librdkafka and the wire client alike.
    refused = qctl("cluster", "info", "-b", "kafka", "--timeout", "10", context="no-cert")
    assert refused.returncode == 3, refused.stderr


# -- SASL re-authentication (KIP-368) -------------------------------------------------------------
def reauth_config(secure_brokers: SecureBrokers) -> Any:
    from qctl.backends.kafka.wire.config import wire_config

    secure_brokers.require_listener(secure_brokers.reauth_port, "Kafka short-session SASL")
    config = wire_config(secure_brokers.kafka(port=secure_brokers.reauth_port))
    assert config is not None
    return config


def metadata(conn: Any) -> bytes:
    from qctl.backends.kafka.wire.groups import encode_metadata_request

    [answer] = conn.pipeline([encode_metadata_request])
    return bytes(answer)


def test_a_long_lived_connection_renews_its_sasl_session(secure_brokers: SecureBrokers) -> None:
    """The listener's sessions last a few seconds (SaslAuthenticate v1 says how long); one
    connection keeps answering for several of them, one request after another and with
    requests in flight."""
    from qctl.backends.kafka.wire.connection import Connection
    from qctl.backends.kafka.wire.groups import encode_metadata_request

    config = reauth_config(secure_brokers)
    with Connection("127.0.0.1", secure_brokers.reauth_port, 60, config) as conn:
        lifetime = conn.session_ends - time.monotonic()
        assert 0 < lifetime < 30, "the listener gives no session lifetime"
        socket_before = conn.sock
        until = time.monotonic() + 3.2 * lifetime
        requests = 0
        while time.monotonic() < until:
            metadata(conn)
            first = conn.send(encode_metadata_request)
            second = conn.send(encode_metadata_request)
            conn.receive(first)
            conn.receive(second)
            requests += 3
            time.sleep(lifetime / 30)  # well inside the renewal window (the last 10%)
        assert conn.sock is socket_before  # renewed on the same connection
    assert requests > 30


def test_without_renewal_the_listener_closes_the_connection(
    secure_brokers: SecureBrokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above means something: the broker does end sessions."""
    from qctl.backends.kafka.wire import connection
    from qctl.backends.kafka.wire.codec import WireError
    from qctl.backends.kafka.wire.connection import Connection

    config = reauth_config(secure_brokers)
    monkeypatch.setattr(connection, "REAUTH_AT", math.inf)  # never renew
    with Connection("127.0.0.1", secure_brokers.reauth_port, 60, config) as conn:
        lifetime = conn.session_ends - time.monotonic()
        metadata(conn)
        time.sleep(lifetime + 0.5)
        with pytest.raises(WireError):
            metadata(conn)
