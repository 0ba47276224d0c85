"""Every cluster-talking command over the secured listeners, and every way they refuse.

`dev/brokers up --secure` (what `make test` runs) gives Kafka a SASL_SSL listener
(SCRAM-SHA-512) and RabbitMQ amqps + HTTPS listeners with a throw-away CA; see
tests/fixtures/secure_brokers.py for the contexts. The positive tests are parametrised
over the secured connections (Kafka SCRAM, RabbitMQ password, RabbitMQ client
certificate); the negative ones assert one line on stderr naming the cause, exit 3,
no traceback, and an answer well before the timeout.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.secure_brokers import SecureBrokers

#: A failure must be reported this fast, well below the --timeout we pass (so it was
#: not a timeout), with room for a loaded machine.
FAST = 12.0
TIMEOUT = "30"


def qctl(
    *args: str, context: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qctl", "--context", context, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(*args: str, context: str, stdin: str | None = None) -> str:
    proc = qctl(*args, context=context, stdin=stdin)
    assert proc.returncode == 0, f"qctl {' '.join(args)}: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@dataclass(frozen=True)
class Secured:
    """One secured way of connecting: a context and the backend it exercises."""

    context: str
    backend: str


@pytest.fixture(
    params=[
        Secured("secure", "kafka"),
        Secured("secure", "rabbitmq"),
        Secured("secure-cert", "rabbitmq"),
    ],
    ids=["kafka-sasl-ssl", "rabbitmq-amqps-password", "rabbitmq-amqps-external"],
)
def secured(request: pytest.FixtureRequest, secure_contexts: SecureBrokers) -> Secured:
    param: Secured = request.param
    return param


def topology_file(tmp_path: Path, name: str, backend: str) -> Path:
    """One topic (with its DLQ) or one exchange, queue, DLQ and binding, owned by ``name``."""
    if backend == "kafka":
        body = f"""
            kafka:
              topics:
                - name: {name}.t
                  partitions: 1
                  dlq: true
        """
    else:
        body = f"""
            rabbitmq:
              exchanges:
                - name: {name}.ex
                  type: direct
              queues:
                - name: {name}.q
                  dlq: true
              bindings:
                - source: {name}.ex
                  destination: {name}.q
                  routing_key: rk
        """
    path = tmp_path / f"{backend}.yaml"
    path.write_text(f"version: 1\nowner: {name}\n" + textwrap.dedent(body))
    return path


@pytest.fixture
def applied(secured: Secured, tmp_path: Path, unique: str) -> Iterator[tuple[Secured, str]]:
    """The topology lifecycle over the secured listener; destroyed afterwards."""
    path = topology_file(tmp_path, unique, secured.backend)
    ctx, b = secured.context, secured.backend
    planned = json.loads(ok("topology", "plan", str(path), "-b", b, "-o", "json", context=ctx))
    assert "create" in json.dumps(planned)
    ok("topology", "apply", str(path), "-b", b, "--yes", context=ctx)
    exported = ok("topology", "export", "-b", b, context=ctx)
    assert f"{unique}." in exported
    ok("topology", "plan", str(path), "-b", b, "--detailed-exitcode", context=ctx)
    try:
        yield secured, unique
    finally:
        destroyed = qctl(
                "topology", "destroy", str(path), "-b", b, "--yes", "--force-delete-nonempty",
                context=ctx,
            )  # fmt: skip
        assert destroyed.returncode == 0, destroyed.stderr


def test_cluster_info(secured: Secured) -> None:
    out = ok("cluster", "info", "-b", secured.backend, "-o", "json", context=secured.context)
    (info,) = json.loads(out)
    assert info["reachable"] is True
    assert info["version"]


def test_topology_produce_consume_offsets_lag_dlq_live_view(applied: tuple[Secured, str]) -> None:
    secured, name = applied
    ctx = secured.context
    if secured.backend == "kafka":
        topic = f"kafka:{name}.t"
        ok("produce", topic, context=ctx, stdin="a\nb\nc\n")
        out = ok("consume", topic, "-n", "3", "-g", f"{name}.g", "-o", "jsonl", context=ctx)
        assert [json.loads(line)["value"] for line in out.splitlines()] == ["a", "b", "c"]
        shown = json.loads(ok("offsets", "show", "-g", f"{name}.g", "-o", "json", context=ctx))
        assert sum(p["committed"] for p in shown["partitions"]) == 3
        reset = json.loads(
            ok("offsets", "reset", "-g", f"{name}.g", "-t", f"{name}.t", "--to-earliest",
               "-o", "json", context=ctx)
        )  # fmt: skip
        assert reset["totals"]["replay"] == 3 and reset["executed"] is False
        lag = json.loads(ok("lag", "-b", "kafka", "-g", f"{name}.g", "-o", "json", context=ctx))
        assert [(g["group"], g["lag"]) for g in lag["groups"]] == [(f"{name}.g", 0)]
        dlq = f"kafka:{name}.t.dlq"
        ok("produce", dlq, context=ctx, stdin="dead\n")
    else:
        ok("produce", f"rabbitmq:exchange/{name}.ex", "-r", "rk", context=ctx, stdin="a\nb\nc\n")
        out = ok("consume", f"rabbitmq:queue/{name}.q", "-n", "3", "--ack", "-o", "jsonl",
                 context=ctx)  # fmt: skip
        assert [json.loads(line)["value"] for line in out.splitlines()] == ["a", "b", "c"]
        lag = json.loads(ok("lag", "-b", "rabbitmq", "-q", f"{name}.q", "-o", "json", context=ctx))
        assert [q["queue"] for q in lag["queues"]] == [f"{name}.q"]
        dlq = f"rabbitmq:queue/{name}.q.dlq"
        ok("produce", dlq, context=ctx, stdin="dead\n")
    listed = json.loads(ok("dlq", "list", "-b", secured.backend, "-o", "json", context=ctx))
    assert dlq in [d["dlq"] for d in listed]
    inspected = json.loads(ok("dlq", "inspect", dlq, "-o", "json", context=ctx))
    assert inspected["total"] == 1
    peeked = ok("dlq", "peek", dlq, "-o", "jsonl", context=ctx)
    assert [json.loads(line)["value"] for line in peeked.splitlines()] == ["dead"]
    check_live_view(secured, name)


def check_live_view(secured: Secured, name: str) -> None:
    """The collector the lag TUI refreshes from, twice, over the secured connection."""
    from qctl.cli.app import App
    from qctl.cli.lag import _collector
    from qctl.lag.collect import Selection

    if secured.backend == "kafka":
        ok("produce", f"kafka:{name}.t", context=secured.context, stdin="d\n")
        selection = Selection(groups=(f"{name}.g",))
    else:
        selection = Selection(queues=(f"{name}.q",))
    app = App(context_name=secured.context)
    collector = _collector(app, selection, (secured.backend,), "auto", 20.0)
    try:
        for _ in range(2):
            snap = collector.snapshot()
            assert snap.errors == []
            if secured.backend == "kafka":
                assert [(g.group, g.lag) for g in snap.groups] == [(f"{name}.g", 1)]
            else:
                assert [q.queue for q in snap.queues] == [f"{name}.q"]
    finally:
        collector.close()
        app.close()


def values(jsonl: str) -> list[str]:
    return [json.loads(line)["value"] for line in jsonl.splitlines()]


def test_dlq_redrive_drain_purge_and_offsets_execute(
    applied: tuple[Secured, str], tmp_path: Path
) -> None:
    """The commands that move or delete messages, and an executed offsets reset."""
    secured, name = applied
    ctx = secured.context
    kafka = secured.backend == "kafka"
    work = f"kafka:{name}.t" if kafka else f"rabbitmq:queue/{name}.q"
    dlq = f"kafka:{name}.t.dlq" if kafka else f"rabbitmq:queue/{name}.q.dlq"
    group = ("-g", f"{name}.g") if kafka else ("--ack",)

    ok("produce", dlq, context=ctx, stdin="r1\nr2\n")
    ok("dlq", "redrive", dlq, "--to", work, "--yes", context=ctx)
    assert values(ok("consume", work, "-n", "2", *group, "-o", "jsonl", context=ctx)) == [
        "r1",
        "r2",
    ]

    ok("produce", dlq, context=ctx, stdin="d1\n")
    archive = tmp_path / "drained.jsonl"
    ok("dlq", "drain", dlq, "--to-file", str(archive), "--yes", context=ctx)
    assert values(archive.read_text()) == ["d1"]
    assert archive.stat().st_mode & 0o777 == 0o600

    ok("produce", dlq, context=ctx, stdin="p1\n")
    ok("dlq", "purge", dlq, "--yes", context=ctx)
    assert json.loads(ok("dlq", "inspect", dlq, "-o", "json", context=ctx))["total"] == 0

    if kafka:  # back to the start, for real, and undone again
        reset = ("offsets", "reset", "-g", f"{name}.g", "-t", f"{name}.t", "--to-earliest")
        ok(*reset, "--execute", "--yes", context=ctx)
        shown = json.loads(ok("offsets", "show", "-g", f"{name}.g", "-o", "json", context=ctx))
        assert sum(p["committed"] for p in shown["partitions"]) == 0
        ok("offsets", "undo", "-g", f"{name}.g", "--execute", "--yes", context=ctx)
        shown = json.loads(ok("offsets", "show", "-g", f"{name}.g", "-o", "json", context=ctx))
        assert sum(p["committed"] for p in shown["partitions"]) == 2
        # OffsetDelete goes through qctl's own wire client, which logs in with SCRAM.
        ok("offsets", "delete", "-g", f"{name}.g", "-t", f"{name}.t", "--execute", "--yes",
           context=ctx)  # fmt: skip
        shown = json.loads(ok("offsets", "show", "-g", f"{name}.g", "-o", "json", context=ctx))
        assert [p["committed"] for p in shown["partitions"]] in ([], [None])


def test_replay_from_kafka_to_rabbitmq_over_both_secured_listeners(
    secure_contexts: SecureBrokers, tmp_path: Path, unique: str
) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(
        f"version: 1\nowner: {unique}\n"
        f"kafka:\n  topics:\n    - name: {unique}.src\n      partitions: 1\n"
        f"rabbitmq:\n  queues:\n    - name: {unique}.dst\n"
    )
    ok("topology", "apply", str(path), "--yes", context="secure")
    try:
        ok("produce", f"kafka:{unique}.src", context="secure", stdin="one\ntwo\n")
        ok("replay", f"kafka:{unique}.src", "--to", f"rabbitmq:queue/{unique}.dst", "--yes",
           context="secure")  # fmt: skip
        out = ok("consume", f"rabbitmq:queue/{unique}.dst", "-n", "2", "--ack", "-o", "jsonl",
                 context="secure-cert")  # fmt: skip
        assert [json.loads(line)["value"] for line in out.splitlines()] == ["one", "two"]
    finally:
        ok("topology", "destroy", str(path), "--yes", "--force-delete-nonempty", context="secure")


# -- refusals ----------------------------------------------------------------------------


def assert_refused(proc: subprocess.CompletedProcess[str], elapsed: float, cause: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qctl: error: "), lines[0]
    assert re.search(cause, lines[0]), lines[0]
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert elapsed < FAST, f"took {elapsed:.1f}s: {lines[0]}"


def refused(context: str, *args: str, stdin: str | None = None) -> tuple[Any, float]:
    start = time.monotonic()
    proc = qctl(*args, "--timeout", TIMEOUT, context=context, stdin=stdin)
    return proc, time.monotonic() - start


REFUSALS = [
    (
        "kafka-bad-password",
        ("lag", "-b", "kafka"),
        r"rejected the SASL credentials of user 'admin' \(authentication failed\)",
    ),
    (
        "kafka-unknown-ca",
        ("produce", "kafka:alice.probe", "-n", "1"),
        r"TLS handshake .* failed: the server's certificate is signed by an unknown CA",
    ),
    (
        "kafka-expired",
        ("consume", "kafka:alice.probe", "-n", "1"),
        r"TLS handshake .* failed: the server's certificate has expired",
    ),
    (
        "kafka-wrong-host",
        ("topology", "export", "-b", "kafka"),
        r"does not match host '127\.0\.0\.1' \(hostname mismatch\)",
    ),
    (
        "rabbitmq-bad-password",
        ("consume", "rabbitmq:queue/probe", "-n", "1"),
        r"refused the credentials of user 'qctl-tls' \(wrong user name or password",
    ),
    (
        "rabbitmq-unknown-ca",
        ("produce", "rabbitmq:queue/probe", "-n", "1"),
        r"TLS handshake .* failed: the server's certificate is signed by an unknown CA",
    ),
    (
        "rabbitmq-expired-cert",
        ("consume", "rabbitmq:queue/probe", "-n", "1"),
        r"rejected the client certificate: it has expired",
    ),
    (
        "rabbitmq-wrong-host",
        ("lag", "-b", "rabbitmq"),
        r"does not match host '127\.0\.0\.2' \(hostname mismatch\)",
    ),
]


@pytest.mark.parametrize(("context", "args", "cause"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusal_names_its_cause(
    secure_contexts: SecureBrokers, context: str, args: tuple[str, ...], cause: str
) -> None:
    proc, elapsed = refused(context, *args, stdin="x\n")
    assert_refused(proc, elapsed, cause)


def test_kafka_user_without_acls_is_not_authorized_for_the_topic(
    secure_contexts: SecureBrokers, tmp_path: Path, unique: str
) -> None:
    """mallory has no ACLs; alice has them only on topics prefixed ``alice.``."""
    mine, theirs = f"alice.{unique}", unique
    path = tmp_path / "acl.yaml"
    path.write_text(
        f"version: 1\nowner: {unique}\nkafka:\n  topics:\n"
        f"    - name: {mine}\n      partitions: 1\n    - name: {theirs}\n      partitions: 1\n"
    )
    ok("topology", "apply", str(path), "--yes", context="secure")
    try:
        ok("produce", f"kafka:{mine}", context="kafka-alice", stdin="hi\n")
        # Without --group qctl reads as a throwaway group named qctl-consume-*, which
        # alice's ACLs (groups prefixed alice.) do not cover.
        out = ok("consume", f"kafka:{mine}", "-n", "1", "-g", f"{mine}.g", "-o", "jsonl",
                 context="kafka-alice")  # fmt: skip
        assert json.loads(out)["value"] == "hi"
        for context, user, args in (
            ("kafka-no-acl", "mallory", ("produce", f"kafka:{mine}")),
            ("kafka-no-acl", "mallory", ("consume", f"kafka:{theirs}", "-n", "1")),
            ("kafka-alice", "alice", ("produce", f"kafka:{theirs}")),
        ):
            proc, elapsed = refused(context, *args, stdin="x\n")
            topic = args[1].split(":", 1)[1]
            assert_refused(
                proc,
                elapsed,
                rf"user '{user}' is not authorized for topic '{re.escape(topic)}' "
                r"\(topic authorization failed",
            )
    finally:
        ok("topology", "destroy", str(path), "--yes", "--force-delete-nonempty", context="secure")


def test_rabbitmq_user_without_configure_rights_is_refused(
    secure_contexts: SecureBrokers, tmp_path: Path, unique: str
) -> None:
    path = topology_file(tmp_path, unique, "rabbitmq")
    proc, elapsed = refused(
        "rabbitmq-no-configure", "topology", "apply", str(path), "-b", "rabbitmq", "--yes"
    )
    assert_refused(proc, elapsed, r"access refused for PUT .*missing permission")
    assert "set_permissions" in proc.stderr
    # Nothing was declared.
    exported = ok("topology", "export", "-b", "rabbitmq", context="secure")
    assert unique not in exported


@pytest.mark.parametrize(
    ("context", "backend"), [("kafka-insecure", "kafka"), ("rabbitmq-insecure", "rabbitmq")]
)
def test_insecure_connects_and_warns_on_every_run(
    secure_contexts: SecureBrokers, context: str, backend: str
) -> None:
    """insecure: true reaches a listener whose certificate does not match, and says so."""
    for _ in range(2):
        proc = qctl("cluster", "info", "-b", backend, "-o", "json", context=context)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["reachable"] is True
        warnings = [line for line in proc.stderr.splitlines() if "verification is OFF" in line]
        assert warnings == [
            f"qctl: warning: context {context!r}: TLS certificate verification is OFF for "
            f"{backend} (insecure: true); the cluster's identity is not checked"
        ], proc.stderr


@pytest.mark.parametrize(
    ("context", "setting"),
    [
        ("kafka-verification-off", "enable.ssl.certificate.verification: false"),
        ("rabbitmq-verification-off", "verify: false"),
    ],
)
def test_verification_is_not_turned_off_silently(
    secure_contexts: SecureBrokers, context: str, setting: str
) -> None:
    proc = qctl("topology", "export", context=context)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0] and "insecure: true" in lines[0], lines
